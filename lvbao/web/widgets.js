// What every page draws with: elements that only ever get text (never HTML), cards, tables, the toast, and the
// contract's field errors in Chinese, under the inputs they are about or in the message.

export const $ = (id) => document.getElementById(id);

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

export function card(title, ...children) {
  const box = el("section", "card");
  if (title) box.append(el("h2", null, title));
  box.append(...children);
  return box;
}

export function table(columns, rows) {
  // ``columns``: [key or (row) => value, header]; a value may be a node; an empty list says 暂无.
  const t = el("table");
  const head = el("tr");
  for (const [, label] of columns) head.append(el("th", null, label));
  t.append(head);
  for (const row of rows) {
    const tr = el("tr");
    for (const [key] of columns) {
      const value = typeof key === "function" ? key(row) : row[key];
      const td = el("td");
      if (value instanceof Node) td.append(value); else td.textContent = value === null || value === undefined ? "—" : value;
      tr.append(td);
    }
    t.append(tr);
  }
  if (!rows.length) {
    const none = el("td", "muted", "暂无");
    none.colSpan = columns.length;
    const tr = el("tr", "none");
    tr.append(none);
    t.append(tr);
  }
  return t;
}

// -- the toast: a short message that belongs to the page it was shown on ----------------------------------

let toastTimer = null;
let carried = null;

export function toast(message, ok = false, ms = 3500) {
  // A short message in the page's #toast box (an error unless ``ok``).
  const box = $("toast");
  box.textContent = message;
  box.className = "toast" + (ok ? " ok" : "");
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, ms);
}

export function toastOnNextPage(message, ok = true) {
  // A message for the page the caller is about to open (a confirmation, then the next page).
  carried = { message, ok };
}

export function toastForPage(changed) {
  // The router's part: a move to another page (``changed``) hides the last page's message; a message left for
  // the next page is shown now. Redrawing the same page keeps what it says.
  if (!changed && !carried) return;
  $("toast").hidden = true;
  if (carried) {
    const { message, ok } = carried;
    carried = null;
    toast(message, ok);
  }
}

// -- field errors ------------------------------------------------------------------------------------------

export function fieldErrors(errors, prefix = "") {
  // The contract's ``errors`` ({field: [messages]}, nested for nested bodies) as [["a.b", "message，message"], ...].
  if (!errors || typeof errors !== "object") return [];
  const out = [];
  for (const [key, value] of Object.entries(errors)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (typeof value === "string") out.push([path, value]);
    else if (Array.isArray(value) && value.every((v) => typeof v === "string")) out.push([path, value.join("，")]);
    else out.push(...fieldErrors(value, path));
  }
  return out;
}

export function fieldLabelled(path, text, labels = {}) {
  // "标签：message" by the label of the longest field path that holds ``path``; a whole-body error has none.
  if (path === "_schema" || path.endsWith("._schema")) return text;
  const keys = Object.keys(labels).filter((k) => path === k || path.startsWith(k + "."));
  const label = keys.length ? labels[keys.reduce((a, b) => (b.length > a.length ? b : a))] : path;
  return `${label}：${text}`;
}

export function withDetails(message, details) {
  // "message（detail；detail）", or the message alone.
  return details.length ? `${message}（${details.join("；")}）` : message;
}

export function errorText(error, labels = {}) {
  // An error's Chinese message and, for a refused request, what was wrong with which field (named by ``labels``).
  const details = fieldErrors(error && error.errors).map(([path, text]) => fieldLabelled(path, text, labels));
  return withDetails((error && error.message) || "操作失败", details);
}

export function markFields(box, specs, inputs, error) {
  // A refused request's field errors under the inputs they are about (a spec's ``api`` names the request fields
  // an input feeds when its own name is not one); what no input is about goes in the toast with the message.
  for (const old of box.querySelectorAll(".field-error")) old.remove();
  for (const input of Object.values(inputs)) input.removeAttribute("aria-invalid");
  if (!error) return;
  const rest = [];
  for (const [path, text] of fieldErrors(error.errors)) {
    const under = (name) => path === name || path.startsWith(name + ".");
    const spec = specs.find((s) => under(s.name) || (s.api || []).some(under));
    if (!spec) { rest.push(fieldLabelled(path, text)); continue; }
    inputs[spec.name].setAttribute("aria-invalid", "true");
    inputs[spec.name].after(el("small", "field-error", text));
  }
  toast(withDetails(error.message, rest));
}
