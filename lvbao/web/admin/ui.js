// The console's own pieces on top of widgets.js: forms whose refused fields are marked, buttons that report
// their failure, a row editor, and formats. A dropped answer (the admin moved on) says nothing.
import { Dropped } from "/web/http.js";
import { card, el, errorText, markFields, toast } from "/web/widgets.js";

export function form(fields, submitText, onSubmit) {
  const f = el("form");
  const inputs = {};
  for (const spec of fields) {
    const label = el("label", spec.wide ? "wide" : "", spec.label);
    let input;
    if (spec.options) {
      input = document.createElement("select");
      for (const [value, text] of spec.options) input.append(new Option(text, value));
    } else if (spec.type === "textarea") {
      input = document.createElement("textarea");
      input.rows = spec.rows || 3;
    } else {
      input = document.createElement("input");
      input.type = spec.type || "text";
    }
    input.name = spec.name;
    if (spec.value !== undefined) input.value = spec.value;
    if (spec.step) input.step = spec.step;
    label.append(input);
    f.append(label);
    inputs[spec.name] = input;
  }
  const submit = el("button", null, submitText);
  submit.type = "submit";
  f.append(submit);
  f.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    markFields(f, fields, inputs, null);
    try {
      await onSubmit(inputs);
    } catch (error) {
      if (!(error instanceof Dropped)) markFields(f, fields, inputs, error);
    } finally {
      submit.disabled = false;
    }
  });
  return { form: f, inputs };
}

export function action(text, onClick, className) {
  const b = el("button", className, text);
  b.type = "button";
  b.addEventListener("click", async () => {
    b.disabled = true;
    try {
      await onClick();
    } catch (error) {
      if (!(error instanceof Dropped)) toast(errorText(error));
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

export function editor(host, title, fields, submitText, onSubmit) {
  // An edit form for one row, opened in ``host`` (a box above the list) and closed after saving.
  const { form: f } = form(fields, submitText, async (inputs) => {
    await onSubmit(inputs);
    host.replaceChildren();
  });
  const box = card(title, f);
  box.classList.add("editor");
  f.append(action("取消", () => host.replaceChildren(), "secondary"));
  host.replaceChildren(box);
  host.querySelector("input, select, textarea").focus();
}

export function columns(...children) {
  const box = el("div", "cols");
  box.append(...children);
  return box;
}

export function short(text, length = 60) {
  const span = el("span", null, text && text.length > length ? text.slice(0, length) + "…" : text);
  span.title = text || "";
  return span;
}

export async function download(ctx, path, name) {
  // A file the API makes (CSV), saved by the browser under ``name``.
  const blob = await ctx.call("GET", path, undefined, { as: "blob" });
  const a = el("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
}

export const local = (iso) => (iso ? new Date(iso).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai" }) : "—");
export const kg = (g) => (g / 1000).toLocaleString("zh-CN", { maximumFractionDigits: 1 }) + " 千克";
export const numberOrNull = (v) => (v === "" ? null : Number(v));
