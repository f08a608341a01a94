// What the device pages (the office screen and the station kiosk) share: the device token handed over in the
// address fragment, a client that sends it, the status badge and the clock. Drawing: widgets.js; calls: http.js.
import { createClient } from "/web/http.js";
import { $ } from "/web/widgets.js";

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

export function deviceClient(token) {
  // A device's calls: its long-lived token, nothing to refresh (a revoked one answers 401 until replaced).
  return createClient({ token: () => token, timeoutMs: 8000 });
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
