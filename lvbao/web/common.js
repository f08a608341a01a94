// What every page of the system shares: the device token handed over in the address fragment, calls to the
// API on this origin with a timeout, and small DOM helpers that only ever set text (never HTML).

export function takeToken(storageKey) {
  // The token comes once as #token=... (a fragment never reaches a server or its logs) and is kept locally.
  const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
  const fromUrl = fragment.get("token");
  if (fromUrl) {
    try { localStorage.setItem(storageKey, fromUrl); } catch (e) { /* private mode: memory only */ }
    history.replaceState(null, "", location.pathname + location.search);
    return fromUrl;
  }
  try { return localStorage.getItem(storageKey); } catch (e) { return null; }
}

export class ApiError extends Error {
  // An answer in the contract's error shape: its Chinese message is what people are shown.
  constructor(status, body) {
    super((body && body.message) || "服务暂不可用，请稍后再试");
    this.status = status;
    this.code = body && body.code;
    this.errors = body && body.errors;
  }
}

export async function api(path, token, { timeoutMs = 8000, as = "json" } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const response = await fetch(path, {
      headers: { Authorization: "Bearer " + token, Accept: as === "json" ? "application/json" : "*/*" },
      cache: "no-store",
      signal: controller.signal,
    });
    if (!response.ok) {
      let body = null;
      try { body = await response.json(); } catch (e) { /* not the error shape */ }
      throw new ApiError(response.status, body);
    }
    return as === "blob" ? await response.blob() : await response.json();
  } finally {
    clearTimeout(timer);
  }
}

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

export function tokenRefresher(readRefresh, keepPair, timeoutMs = 10000) {
  // A refresh of a signed-in person's token pair that runs one at a time: refresh tokens rotate, and a spent
  // one presented again revokes the whole family. Resolves true when ``keepPair`` got a new pair, false when
  // there is none to refresh or the server refused (the session has ended).
  let refreshing = null;
  return () => {
    if (!refreshing) {
      refreshing = (async () => {
        const token = readRefresh();
        if (!token) return false;
        const controller = new AbortController();
        const timer = setTimeout(() => controller.abort(), timeoutMs);
        let response;
        try {
          response = await fetch("/api/auth/refresh", {
            method: "POST", cache: "no-store", signal: controller.signal,
            headers: { "Content-Type": "application/json", Accept: "application/json" },
            body: JSON.stringify({ refresh_token: token }),
          });
        } catch (e) {
          throw new ApiError(0, { code: "network", message: "网络不稳定，请稍后重试" });
        } finally {
          clearTimeout(timer);
        }
        if (!response.ok) return false;
        keepPair(await response.json());
        return true;
      })().finally(() => { refreshing = null; });
    }
    return refreshing;
  };
}

export const $ = (id) => document.getElementById(id);

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

export const hhmmss = (date) => date.toLocaleTimeString("zh-CN", { hour12: false, timeZone: "Asia/Shanghai" });

export function setStatus(kind, text) {
  const badge = $("status");
  badge.className = "badge " + kind;
  badge.textContent = text;
  const main = document.querySelector("main");
  main.dataset.state = kind;
  main.classList.toggle("stale", kind !== "live");
}

export function startClock() {
  const tick = () => { $("clock").textContent = hhmmss(new Date()); };
  tick();
  setInterval(tick, 1000);
}

let toastTimer = null;
let carried = null;
let shownPage = null;
export function toast(message, ok = false, ms = 3500) {
  // A short message in the page's #toast box (an error unless ``ok``).
  const box = document.getElementById("toast");
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

export function pageChanged(page) {
  // Called by a router as it shows ``page``: a message belongs to the page it was shown on, so a move to
  // another page hides it and shows the one left for that page, if any. Redrawing the same page keeps it.
  if (page === shownPage && !carried) return;
  shownPage = page;
  document.getElementById("toast").hidden = true;
  if (carried) {
    const { message, ok } = carried;
    carried = null;
    toast(message, ok);
  }
}

export function card(title, ...children) {
  const box = el("section", "card");
  if (title) box.append(el("h2", null, title));
  box.append(...children);
  return box;
}
