// The station kiosk: the station's current code as a large QR that is replaced before it expires, the window
// open now, and today's scans. Uses GET /api/activities/stations/{id}/code (and its PNG) and .../kiosk with
// the station's device token (handed over once in the address fragment, see common.js).
import { deviceClient, setStatus, startClock, takeToken } from "/web/common.js";
import { ApiError } from "/web/http.js";
import { STATION_KINDS, TYPES } from "/web/vocabulary.js";
import { $ } from "/web/widgets.js";

const match = location.pathname.match(/\/station\/(\d+)\/?$/);
const stationId = match ? match[1] : null;
const token = takeToken("lvbao.station.token." + stationId);
const api = deviceClient(token);
// A canteen's kiosk also names the action its scans record (a sorting point's name already says it).
const KIND_TEXT = { canteen: `${STATION_KINDS.canteen} · ${TYPES.clean_plate}`, sorting: STATION_KINDS.sorting };
const EARLY_MS = 5000;  // a new code is fetched this long before the current one expires
const INFO_EVERY_MS = 10000;

let skewMs = 0;  // server clock minus this browser's, from the last kiosk answer
let codeTimer = null;
let shownUrl = null;
let expiresAt = null;

function failed(error) {
  if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
    setStatus("error", "站点凭证无效或已撤销");
  } else if (error instanceof ApiError && error.code === "station_inactive") {
    setStatus("error", "站点已停用");
  } else {
    setStatus("stale", "网络中断，正在重试…");
  }
}

async function refreshCode() {
  clearTimeout(codeTimer);
  let delay = 3000;
  try {
    const code = await api.get(`/api/activities/stations/${stationId}/code`);
    const image = await api.get(`/api/activities/stations/${stationId}/code.png`, { as: "blob" });
    const url = URL.createObjectURL(image);
    const img = $("qr");
    img.src = url;
    img.hidden = false;
    img.dataset.code = code.code;
    $("qr-wait").hidden = true;
    if (shownUrl) URL.revokeObjectURL(shownUrl);
    shownUrl = url;
    $("code-text").textContent = code.code;
    expiresAt = new Date(code.expires_at).getTime();
    delay = Math.max(1000, expiresAt - (Date.now() + skewMs) - EARLY_MS);
    setStatus("live", "实时");
  } catch (error) {
    failed(error);
  } finally {
    codeTimer = setTimeout(refreshCode, delay);
  }
}

function windowText(window) {
  return window ? `${window.name} ${window.start}–${window.end}` : "当前不在开放时段";
}

async function refreshInfo() {
  try {
    const kiosk = await api.get(`/api/activities/stations/${stationId}/kiosk`);
    skewMs = new Date(kiosk.generated_at).getTime() - Date.now();
    $("station-name").textContent = kiosk.station.name;
    document.title = "绿宝碳汇 · " + kiosk.station.name;
    $("station-kind").textContent = KIND_TEXT[kiosk.station.kind] || kiosk.station.kind;
    $("window").textContent = windowText(kiosk.window);
    $("scans").textContent = kiosk.scans_today.toLocaleString("zh-CN");
  } catch (error) {
    failed(error);
  } finally {
    setTimeout(refreshInfo, INFO_EVERY_MS);
  }
}

function tickCountdown() {
  if (expiresAt) {
    const left = Math.max(0, expiresAt - (Date.now() + skewMs));
    $("countdown-bar").style.width = Math.min(100, (left / 30000) * 100) + "%";
  }
}

if (!stationId || !token) {
  setStatus("error", "缺少站点凭证：请用管理后台生成的链接打开");
} else {
  startClock();
  setInterval(tickCountdown, 1000);
  refreshInfo().then(refreshCode);
}
