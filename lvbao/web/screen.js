// The office screen: polls GET /api/points/screens/{id} with the screen's device token and redraws in place.
// The token comes once in the address fragment (see common.js). When the API cannot be reached the last data
// stays up, marked stale, and polling goes on until it answers again.
import { deviceClient, hhmmss, setStatus, startClock, takeToken } from "/web/common.js";
import { ApiError } from "/web/http.js";
import { MODES, TYPES, UNITS } from "/web/vocabulary.js";
import { $, el } from "/web/widgets.js";

const match = location.pathname.match(/\/screen\/(\d+)\/?$/);
const institutionId = match ? match[1] : null;
const params = new URLSearchParams(location.search);
const intervalSeconds = Math.min(300, Math.max(1, Number(params.get("interval")) || 15));
const token = takeToken("lvbao.screen.token." + institutionId);

const api = deviceClient(token);

let lastData = null;
let lastOkAt = null;
let seenTicker = new Set();

const kg = (grams) => (grams / 1000).toLocaleString("zh-CN", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const int = (n) => Number(n || 0).toLocaleString("zh-CN");

function renderPeople(board) {
  const list = $("people");
  list.replaceChildren();
  for (const entry of board.entries) {
    const row = el("li");
    row.append(el("span", "rank", entry.rank));
    const who = el("span", "who", entry.nickname);
    if (entry.department) who.append(el("small", null, entry.department));
    row.append(who);
    const score = el("span", "score", int(entry.points));
    score.append(el("small", null, "分"));
    row.append(score);
    list.append(row);
  }
  $("people-count").textContent = board.total ? "共 " + int(board.total) + " 人上榜" : "";
  $("people-empty").hidden = board.entries.length > 0;
}

function renderDepartments(ranking) {
  const list = $("departments");
  list.replaceChildren();
  const items = ranking.items.slice(0, 10);
  for (const item of items) {
    const row = el("li");
    row.append(el("span", "rank", item.rank));
    const who = el("span", "who", item.department);
    who.append(el("small", null, "参与 " + Math.round(item.participation * 100) + "%"));
    const bar = el("div", "bar");
    const fill = el("i");
    fill.style.width = Math.round(Math.min(1, item.participation) * 100) + "%";
    bar.append(fill);
    who.append(bar);
    row.append(who);
    const score = el("span", "score", item.per_capita.toFixed(1));
    score.append(el("small", null, "分/人"));
    row.append(score);
    list.append(row);
  }
  $("departments-empty").hidden = items.length > 0;
}

function describe(item) {
  // A commute says its mode ("骑行 9 公里"); the others their kind ("光盘行动").
  const what = item.action_type === "commute" && MODES[item.variant]
    ? MODES[item.variant] : (TYPES[item.action_type] || item.action_type);
  const quantity = item.quantity ? Number(item.quantity).toLocaleString("zh-CN", { maximumFractionDigits: 1 }) : "";
  const unit = UNITS[item.unit] || "";
  const amount = item.unit === "km" || item.unit === "kwh" ? " " + quantity + " " + unit : "";
  return what + amount + " · 减碳 " + kg(item.carbon_g) + " 千克";
}

function ago(at, now) {
  const minutes = Math.floor((now - new Date(at)) / 60000);
  if (minutes < 1) return "刚刚";
  if (minutes < 60) return minutes + " 分钟前";
  return new Date(at).toLocaleTimeString("zh-CN", { hour: "2-digit", minute: "2-digit", hour12: false,
                                                   timeZone: "Asia/Shanghai" });
}

function renderTicker(items, generatedAt) {
  const list = $("ticker");
  list.replaceChildren();
  const now = new Date(generatedAt);
  const next = new Set();
  for (const item of items.slice(0, 9)) {
    const id = item.at + "|" + item.action_type + "|" + item.points + "|" + item.carbon_g;
    next.add(id);
    const row = el("li", seenTicker.size && !seenTicker.has(id) ? "fresh" : "");
    row.append(el("span", "when", ago(item.at, now)));
    row.append(el("span", "what", describe(item)));
    row.append(el("span", "gain", "+" + item.points + " 分"));
    list.append(row);
  }
  seenTicker = next;
  $("ticker-empty").hidden = items.length > 0;
}

function render(data) {
  if (data.institution && data.institution.name) {
    $("institution").textContent = data.institution.name;
    document.title = "绿宝碳汇 · " + data.institution.name;
  }
  $("week-carbon").textContent = kg(data.week.carbon_g);
  $("week-trees").textContent = data.week.trees.toLocaleString("zh-CN");
  $("week-points").textContent = int(data.week.points);
  $("month-carbon").textContent = kg(data.month.carbon_g);
  $("month-trees").textContent = data.month.trees.toLocaleString("zh-CN");
  $("month-points").textContent = int(data.month.points);
  renderPeople(data.individuals);
  renderDepartments(data.departments);
  renderTicker(data.ticker, data.generated_at);
  $("factor").textContent = "树木当量：" + data.equivalent.note;
}

async function poll() {
  if (!institutionId || !token) {
    setStatus("error", "缺少屏幕凭证：请用管理后台生成的链接打开");
    return;
  }
  try {
    lastData = await api.get("/api/points/screens/" + institutionId);
    lastOkAt = new Date();
    render(lastData);
    setStatus("live", "实时");
    $("updated").textContent = "更新于 " + hhmmss(lastOkAt);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      setStatus("error", "屏幕凭证无效或已撤销");
    } else {
      setStatus("stale", lastData ? "连接中断 · 显示 " + hhmmss(lastOkAt) + " 的数据" : "正在连接…");
    }
  } finally {
    setTimeout(poll, intervalSeconds * 1000);
  }
}

startClock();
poll();
