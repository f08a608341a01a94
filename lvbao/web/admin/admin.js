// The admin console: rules (with a live preview of the receipt), stations, rewards, roster import, the review
// queue, devices and statistics, over the public API. An institution admin works in their institution; the
// province admin picks one. Tokens live in sessionStorage and are refreshed once when they expire.
import {
  ApiError, card, el, errorText, fieldErrors, fieldLabelled, pageChanged, toast, toastOnNextPage, tokenRefresher,
  withDetails,
} from "/web/common.js";

const KEYS = { access: "lvbao.admin.access", refresh: "lvbao.admin.refresh" };
const TYPES = { commute: "绿色出行", clean_plate: "光盘行动", waste_sorting: "垃圾分类", ev_charging: "新能源充电" };
const page = document.getElementById("page");
const state = { me: null, institutionId: null };
const stored = (k) => sessionStorage.getItem(k);
const store = (k, v) => (v === null ? sessionStorage.removeItem(k) : sessionStorage.setItem(k, v));

// Every route() is a new turn: an answer to a call made in an earlier turn (another page, another institution,
// before a sign-out) is dropped as Stale, so it can neither be drawn nor speak on the page that came after.
let turn = 0;
class Stale extends Error {}

async function call(method, path, body, options = {}) {
  const mine = turn;
  const stale = () => mine !== turn && !options.anyTurn;
  let answer;
  try {
    answer = await request(method, path, body, options);
  } catch (error) {
    throw stale() ? new Stale() : error;
  }
  if (stale()) throw new Stale();
  return answer;
}

const refreshTokens = tokenRefresher(() => stored(KEYS.refresh), (pair) => {
  store(KEYS.access, pair.access_token);
  store(KEYS.refresh, pair.refresh_token);
});

async function request(method, path, body, options = {}) {
  // options: raw body and its contentType; signedOut (sign-in: no token sent); noRefresh (sign-out: an ended
  // session is not renewed for it); retried (internal).
  const { raw = false, contentType = "application/json", retried = false, signedOut = false, noRefresh = false } = options;
  const headers = { Accept: "application/json" };
  const sent = signedOut ? null : stored(KEYS.access);
  if (sent) headers.Authorization = "Bearer " + sent;
  if (body !== undefined) headers["Content-Type"] = contentType;
  let response;
  try {
    response = await fetch(path, { method, headers, cache: "no-store",
                                   body: body === undefined ? undefined : raw ? body : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, { message: "网络不稳定，请稍后重试" });
  }
  if (response.status === 401 && !retried && sent && !noRefresh) {
    const again = { ...options, retried: true };
    if (stored(KEYS.access) && stored(KEYS.access) !== sent) return request(method, path, body, again);  // renewed meanwhile
    if (await refreshTokens()) return request(method, path, body, again);
    // The session has ended (refresh refused): sign in again, then back to this page.
    if (stored(KEYS.access)) signOut("登录已失效，请重新登录");  // once, however many calls were waiting
    throw new Stale();
  }
  if (!response.ok) {
    let problem = null;
    try { problem = await response.json(); } catch (e) { /* not the error shape */ }
    throw new ApiError(response.status, problem);
  }
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.blob();
}

function table(columns, rows) {
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

function form(fields, submitText, onSubmit) {
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
      if (!(error instanceof Stale)) markFields(f, fields, inputs, error);
    } finally {
      submit.disabled = false;
    }
  });
  return { form: f, inputs };
}

function markFields(f, specs, inputs, error) {
  // A refused request's field errors under the inputs they are about (a spec's ``api`` names the request fields
  // an input feeds when its own name is not one); what no input is about goes in the message.
  for (const old of f.querySelectorAll(".field-error")) old.remove();
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

function action(text, onClick, className) {
  const b = el("button", className, text);
  b.type = "button";
  b.addEventListener("click", async () => {
    b.disabled = true;
    try { await onClick(); } catch (error) { if (!(error instanceof Stale)) toast(errorText(error)); } finally { b.disabled = false; }
  });
  return b;
}

function columns(...children) {
  const box = el("div", "cols");
  box.append(...children);
  return box;
}

function short(text, length = 60) {
  const span = el("span", null, text && text.length > length ? text.slice(0, length) + "…" : text);
  span.title = text || "";
  return span;
}

const inst = () => state.institutionId;
const local = (iso) => (iso ? new Date(iso).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai" }) : "—");
const kg = (g) => (g / 1000).toLocaleString("zh-CN", { maximumFractionDigits: 1 }) + " 千克";
const numberOrNull = (v) => (v === "" ? null : Number(v));

// -- sign in ------------------------------------------------------------------------------------------------

function loginPage() {
  const { form: f } = form([{ name: "username", label: "用户名" }, { name: "password", label: "密码", type: "password" }],
    "登录", async (inputs) => {
      const pair = await call("POST", "/api/auth/admin/login", { username: inputs.username.value, password: inputs.password.value },
                              { signedOut: true });
      store(KEYS.access, pair.access_token);
      store(KEYS.refresh, pair.refresh_token);
      forgetScope();  // whoever was signed in before, the scope is this admin's
      // Back to the page that asked for the sign-in (a bookmark, an expired session), or the rules.
      if (currentPath() === "login") location.hash = "#/rules";
      else route();
    });
  const box = card("管理员登录", f);
  box.classList.add("login");
  page.replaceChildren(box);
}

let scoping = null;
let session = 0;  // bumped by every sign-in and sign-out: a scope loaded for an earlier one is not kept
function forgetScope() {
  scoping = null;
  session += 1;
}

function ensureScope() {
  // Who is signed in and which institution the pages are about: loaded once per sign-in, shared by every route.
  if (!scoping) {
    const loading = loadScope().catch((error) => {
      if (scoping === loading) scoping = null;  // the next route tries again
      throw error;
    });
    scoping = loading;
  }
  return scoping;
}

async function loadScope() {
  const opts = { anyTurn: true };
  const mine = session;
  const me = await call("GET", "/api/auth/me", undefined, opts);
  const institutions = (me.roles || []).includes("province_admin")
    ? (await call("GET", "/api/auth/institutions?limit=100", undefined, opts)).items : null;
  const own = institutions ? null : await call("GET", `/api/auth/institutions/${me.institution_id}`, undefined, opts);
  if (mine !== session) throw new Stale();
  const scope = document.getElementById("scope");
  if (institutions) {
    const select = document.createElement("select");
    select.id = "institution";
    for (const i of institutions) select.append(new Option(i.name, i.id));
    const back = resume && resume.admin === (me.username || me.id) && institutions.some((i) => i.id === resume.institutionId);
    state.institutionId = back ? resume.institutionId : institutions.length ? institutions[0].id : null;
    select.value = String(state.institutionId);
    select.addEventListener("change", async () => {
      state.institutionId = Number(select.value);
      select.disabled = true;
      try { await route(); } finally { select.disabled = false; }
    });
    scope.replaceChildren(select);
  } else {
    state.institutionId = me.institution_id;
    scope.textContent = own.name;
  }
  state.me = me;
  resume = null;
  document.getElementById("who").textContent = me.username || me.nickname || "";
}

let resume = null;  // after a session ended by itself: who it was and which institution they were in

function signOut(why = null) {
  // Forget the tokens and everything the last admin's pages knew; ``why``: the session ended by itself.
  resume = why && state.me ? { admin: state.me.username || state.me.id, institutionId: state.institutionId } : null;
  turn += 1;
  forgetScope();
  store(KEYS.access, null);
  store(KEYS.refresh, null);
  state.me = null;
  state.institutionId = null;
  document.getElementById("scope").replaceChildren();
  document.getElementById("who").textContent = "";
  if (why) {
    toastOnNextPage(why, false);
    route();  // the sign-in form, on this page's address
  } else {
    location.hash = "#/login";
  }
}

// -- rules, with a live preview ------------------------------------------------------------------------------

// The preview's request fields, as its message names them.
const RULE_FIELDS = { "rule.variants": "减碳因子", "rule.g_per_point": "每分克数", "rule.daily_cap_points": "每日积分上限",
                      "rule.source": "因子来源", "action.variant": "方式", "action.quantity": "示例数量" };

async function rulesPage() {
  const rules = (await call("GET", `/api/points/rules?institution_id=${inst()}`)).items;
  const history = el("div");
  history.id = "versions";
  const versions = (r) => action("历史版本", async () => {
    const scope = r.institution_id ? `?institution_id=${r.institution_id}` : "";  // none: the province default
    const all = (await call("GET", `/api/points/rules/${r.action_type}/versions${scope}`)).items;
    history.replaceChildren(card(`${TYPES[r.action_type] || r.action_type}：全部版本`, table([
      ["version", "版本"], [(v) => local(v.effective_from), "生效"], [(v) => local(v.effective_to), "失效"], ["g_per_point", "克/分"],
      ["daily_cap_points", "每日上限"], [(v) => short(v.source), "来源"]], all)));
  }, "secondary");
  const list = table([
    [(r) => TYPES[r.action_type] || r.action_type, "行为"], ["version", "版本"],
    [(r) => (r.institution_id ? "本单位" : "全省默认"), "范围"],
    [(r) => Object.entries(r.variants).map(([k, v]) => `${k}: ${v.carbon_g_per_unit} 克/${r.unit}`).join("；"), "减碳因子"],
    ["g_per_point", "克/分"], ["daily_cap_points", "每日上限"], [(r) => local(r.effective_from), "生效"],
    [(r) => short(r.source), "来源"], [versions, ""],
  ], rules);
  const byType = Object.fromEntries(rules.map((r) => [r.action_type, r]));
  const first = rules[0];
  const preview = el("div", "receipt", "修改上方参数即可预览示例行为的积分回执");
  preview.id = "preview";
  const { form: f, inputs } = form([
    { name: "action_type", label: "行为", options: rules.map((r) => [r.action_type, TYPES[r.action_type] || r.action_type]) },
    { name: "variant", label: "方式（变体）", value: first ? Object.keys(first.variants)[0] : "default" },
    { name: "factor", label: "减碳因子（克/单位）", type: "number", api: ["variants"], value: first ? Object.values(first.variants)[0].carbon_g_per_unit : 100 },
    { name: "g_per_point", label: "每分克数", type: "number", value: first ? first.g_per_point : 50 },
    { name: "daily_cap_points", label: "每日积分上限（空为不限）", type: "number", value: first && first.daily_cap_points !== null ? first.daily_cap_points : "" },
    { name: "quantity", label: "示例数量", type: "number", step: "0.1", value: 10 },
    { name: "source", label: "因子来源", wide: true, value: first ? first.source : "" },
  ], "发布新版本", async (inputs) => {
    const created = await call("POST", "/api/points/rules", ruleFrom(inputs));
    toast(`已发布 ${TYPES[created.action_type] || created.action_type} 第 ${created.version} 版`, true);
    await rulesPage();
  });
  const ruleFrom = (inputs) => {
    const base = byType[inputs.action_type.value];
    const variants = JSON.parse(JSON.stringify(base.variants));
    variants[inputs.variant.value] = { ...(variants[inputs.variant.value] || {}), carbon_g_per_unit: Number(inputs.factor.value) };
    return {
      action_type: base.action_type, institution_id: base.institution_id, unit: base.unit, variants,
      g_per_point: Number(inputs.g_per_point.value), daily_cap_points: numberOrNull(inputs.daily_cap_points.value),
      max_quantity_per_action: base.max_quantity_per_action, daily_count_limit: base.daily_count_limit,
      claim_window_days: base.claim_window_days, source: inputs.source.value,
    };
  };
  let pending = null;
  const refresh = () => {
    clearTimeout(pending);
    pending = setTimeout(async () => {
      if (!preview.isConnected) return;  // the admin has left the rules page
      try {
        const rule = ruleFrom(inputs);
        const r = await call("POST", "/api/points/rules/preview",
          { rule, action: { variant: inputs.variant.value, quantity: String(inputs.quantity.value || 0) } });
        preview.textContent = `${r.quantity} × ${r.factor_g_per_unit} 克 = ${r.carbon_g} 克 CO₂e → ${r.points} 分`
          + (r.capped ? `（按每日上限，原应 ${r.uncapped_points} 分）` : "");
      } catch (error) {
        if (!(error instanceof Stale)) preview.textContent = "无法预览：" + errorText(error, RULE_FIELDS);
      }
    }, 250);
  };
  for (const input of Object.values(inputs)) input.addEventListener("input", refresh);
  inputs.action_type.addEventListener("change", () => {
    const base = byType[inputs.action_type.value];
    const [variant, spec] = Object.entries(base.variants)[0];
    inputs.variant.value = variant;
    inputs.factor.value = spec.carbon_g_per_unit;
    inputs.g_per_point.value = base.g_per_point;
    inputs.source.value = base.source;
    refresh();
  });
  show("rules", card("现行规则", list), history,
                       card("新建规则版本（立即生效，不改写历史）", f, el("h2", null, "回执预览"), preview));
  refresh();
}

// -- stations ----------------------------------------------------------------------------------------------

const KINDS = { canteen: "食堂回盘处", sorting: "垃圾分类点" };
const windowsText = (windows) => windows.map((w) => `${w.name} ${w.start}-${w.end}`).join("\n");

function windowsFrom(text) {
  // One window a line: "午餐 11:00-13:30".
  return text.split("\n").map((l) => l.trim()).filter(Boolean).map((line) => {
    const [name, span] = line.split(/\s+/);
    const [start, end] = (span || "").split("-");
    return { name, start, end };
  });
}

function editor(host, title, fields, submitText, onSubmit) {
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

async function stationsPage() {
  const stations = (await call("GET", `/api/activities/stations?institution_id=${inst()}`)).items;
  const editing = el("div");
  editing.id = "station-editor";
  const { form: f } = form([
    { name: "name", label: "站点名称" }, { name: "kind", label: "类型", options: Object.entries(KINDS) },
    { name: "printed_codes", label: "接受打印二维码", options: [["false", "否（只用站点屏幕）"], ["true", "是（无屏幕站点）"]] },
    { name: "windows", label: "开放时段（每行：名称 开始-结束）", type: "textarea", wide: true, value: "午餐 11:00-13:30\n晚餐 17:00-19:00" },
  ], "新建站点", async (inputs) => {
    await call("POST", "/api/activities/stations", { institution_id: inst(), name: inputs.name.value, kind: inputs.kind.value,
      windows: windowsFrom(inputs.windows.value), printed_codes: inputs.printed_codes.value === "true" });
    toast("站点已创建", true);
    await stationsPage();
  });
  const edit = (s) => action("编辑", () => editor(editing, `编辑站点：${s.name}`, [
    { name: "name", label: "站点名称", value: s.name },
    { name: "active", label: "状态", options: [["true", "启用"], ["false", "停用"]], value: String(s.active) },
    { name: "printed_codes", label: "接受打印二维码", options: [["false", "否"], ["true", "是"]], value: String(s.printed_codes) },
    { name: "windows", label: "开放时段（每行：名称 开始-结束）", type: "textarea", wide: true, value: windowsText(s.windows) },
  ], "保存", async (inputs) => {
    await call("PATCH", `/api/activities/stations/${s.id}`, { name: inputs.name.value, active: inputs.active.value === "true",
      printed_codes: inputs.printed_codes.value === "true", windows: windowsFrom(inputs.windows.value) });
    toast("站点已保存", true);
    await stationsPage();
  }), "secondary");
  const rotate = (s) => action("更换密钥", async () => {
    if (!confirm(`更换“${s.name}”的签名密钥？屏幕上的二维码会立即更新，已打印的二维码全部作废。`)) return;
    await call("PATCH", `/api/activities/stations/${s.id}`, { rotate_secret: true });
    toast("密钥已更换，已打印的二维码作废", true);
  }, "secondary");
  const print = (s) => (s.printed_codes && s.active ? action("打印二维码", () => { location.hash = `#/stations/${s.id}/sheet`; }, "secondary")
    : el("span", "muted", s.active ? "未开启打印" : "已停用"));
  const tools = (s) => {
    const wrap = el("span", "tools");
    wrap.append(edit(s), rotate(s), print(s));
    return wrap;
  };
  const list = table([["id", "编号"], ["name", "名称"], [(s) => KINDS[s.kind] || s.kind, "类型"],
    [(s) => s.windows.map((w) => `${w.name} ${w.start}-${w.end}`).join("，"), "时段"], [(s) => (s.active ? "启用" : "停用"), "状态"],
    [(s) => (s.printed_codes ? "接受" : "不接受"), "打印码"], [tools, "操作"]], stations);
  list.id = "stations";
  show("stations", card("站点", list,
    el("p", "muted", "有屏幕的站点：在“设备”中为站点平板生成凭证，打开 /station/<编号>#token=<凭证>，二维码每 30 秒更新。"
      + "没有屏幕的站点（如垃圾分类点）：开启“接受打印二维码”后打印，每张二维码仅在其日期当天有效。")),
    editing, card("新建站点", f));
}

async function sheetPage(stationId) {
  // A printable sheet: one A4 page per day, each with that day's code as a large QR.
  const count = document.createElement("select");
  count.id = "sheet-days";
  for (const n of [1, 7, 14, 31]) count.append(new Option(`${n} 天`, n));
  count.value = "7";
  const start = document.createElement("input");
  start.type = "date";
  start.id = "sheet-from";
  start.value = new Date().toLocaleDateString("sv-SE", { timeZone: "Asia/Shanghai" });  // YYYY-MM-DD, local
  const pages = el("div", "sheet");
  pages.id = "sheet";
  const urls = [];
  const render = async () => {
    const sheet = await call("GET", `/api/activities/stations/${stationId}/sheet?from=${start.value}&days=${count.value}`);
    const images = await Promise.all(sheet.days.map((d) => call("GET", d.svg_url)));
    for (const url of urls.splice(0)) URL.revokeObjectURL(url);
    const station = sheet.station;
    pages.replaceChildren(...sheet.days.map((day, n) => {
      const url = URL.createObjectURL(images[n]);
      urls.push(url);
      const img = el("img");
      img.src = url;
      img.alt = `${day.date} 二维码`;
      img.dataset.code = day.code;
      const when = new Date(day.date + "T12:00:00+08:00").toLocaleDateString("zh-CN",
        { timeZone: "Asia/Shanghai", year: "numeric", month: "long", day: "numeric", weekday: "long" });
      const sheetPage = el("section", "sheet-page");
      sheetPage.append(el("p", "sheet-brand", "绿宝碳汇 · 低碳积分"), el("h1", null, station.name),
        el("p", "sheet-kind", station.kind === "canteen" ? "光盘行动 · 用餐后请扫码" : "垃圾分类 · 投放后请扫码"),
        el("p", "sheet-date", when), img,
        el("p", null, "开放时段：" + station.windows.map((w) => `${w.name} ${w.start}–${w.end}`).join("　")),
        el("p", "sheet-note", "请用“绿宝碳汇”小程序扫码 · 本码仅限当日使用 · 每个时段每人记录一次"),
        el("p", "sheet-code", day.code));
      return sheetPage;
    }));
  };
  const controls = card("打印站点二维码", el("p", "muted", "每页一天；打印后按日期张贴。更换站点密钥会使已打印的二维码全部作废。"),
    el("label", "inline", "起始日期"), start, " ", el("label", "inline", "天数"), count, " ",
    action("生成", render, "secondary"), " ", action("打印", () => window.print()), " ",
    action("返回站点", () => { location.hash = "#/stations"; }, "secondary"));
  controls.classList.add("no-print");
  const rerender = () => render().catch((e) => { if (!(e instanceof Stale)) toast(errorText(e)); });
  start.addEventListener("change", rerender);
  count.addEventListener("change", rerender);
  show(`stations/${stationId}/sheet`, controls, pages);
  await render();
}

// -- rewards -----------------------------------------------------------------------------------------------

async function rewardsPage() {
  const items = (await call("GET", `/api/rewards/catalog?institution_id=${inst()}&limit=100`)).items;
  const stock = (item) => {
    const wrap = el("span", "tools");
    const delta = document.createElement("input");
    delta.type = "number";
    delta.style.width = "80px";
    delta.placeholder = "±数量";
    wrap.append(delta, action("调整库存", async () => {
      await call("POST", `/api/rewards/catalog/${item.id}/stock`, { delta: Number(delta.value), reason: "管理后台调整" });
      toast("库存已调整", true);
      await rewardsPage();
    }, "secondary"));
    return wrap;
  };
  const { form: f } = form([
    { name: "name", label: "名称" }, { name: "points_cost", label: "所需积分", type: "number", value: 100 },
    { name: "stock", label: "库存", type: "number", value: 10 }, { name: "per_user_limit", label: "每人限兑（空为不限）", type: "number" },
    { name: "description", label: "说明", wide: true },
  ], "新建奖品", async (inputs) => {
    await call("POST", "/api/rewards/catalog", { institution_id: inst(), name: inputs.name.value,
      description: inputs.description.value, points_cost: Number(inputs.points_cost.value), stock: Number(inputs.stock.value),
      per_user_limit: numberOrNull(inputs.per_user_limit.value) });
    toast("奖品已创建", true);
    await rewardsPage();
  });
  const shelf = (item) => action(item.active === false ? "上架" : "下架", async () => {
    await call("PATCH", `/api/rewards/catalog/${item.id}`, { active: item.active === false });
    toast(item.active === false ? "已上架" : "已下架", true);
    await rewardsPage();
  }, "secondary");
  const editing = el("div");
  editing.id = "reward-editor";
  const edit = (item) => action("编辑", () => editor(editing, `编辑奖品：${item.name}`, [
    { name: "name", label: "名称", value: item.name },
    { name: "points_cost", label: "所需积分（之后的兑换生效）", type: "number", value: item.points_cost },
    { name: "per_user_limit", label: "每人限兑（空为不限）", type: "number", value: item.per_user_limit ?? "" },
    { name: "description", label: "说明", wide: true, value: item.description || "" },
  ], "保存", async (inputs) => {
    await call("PATCH", `/api/rewards/catalog/${item.id}`, { name: inputs.name.value, description: inputs.description.value,
      points_cost: Number(inputs.points_cost.value), per_user_limit: numberOrNull(inputs.per_user_limit.value) });
    toast("奖品已保存", true);
    await rewardsPage();
  }), "secondary");
  const tools = (item) => {
    const wrap = el("span", "tools");
    wrap.append(edit(item), shelf(item));
    return wrap;
  };
  const list = table([["name", "名称"], [(r) => short(r.description, 24), "说明"], ["points_cost", "积分"], ["stock", "库存"], ["per_user_limit", "每人限兑"],
                      [(r) => (r.active === false ? "已下架" : "在售"), "状态"], [stock, "库存调整"], [tools, "操作"]], items);
  list.id = "rewards";
  show("rewards", card("奖品", list), editing, card("新建奖品", f),
    card(null, action("导出兑换记录 CSV", () => download(`/api/rewards/redemptions.csv?institution_id=${inst()}`, "redemptions.csv"), "secondary")));
}

// -- roster ------------------------------------------------------------------------------------------------

const ROSTER_FIELDS = { employee_no: "工号", name: "姓名", phone: "手机号", department_code: "部门编码",
                        nickname: "昵称", header: "表头", _row: "整行", _file: "文件" };

async function rosterPage() {
  const file = document.createElement("input");
  file.type = "file";
  file.accept = ".csv,text/csv";
  file.id = "roster-file";
  file.className = "file-input";  // the browser's own picker speaks the browser's language: this one is ours
  const chosen = el("span", "muted", "未选择文件");
  file.addEventListener("change", () => { chosen.textContent = file.files.length ? file.files[0].name : "未选择文件"; });
  const picker = el("label", "file-picker");
  picker.htmlFor = file.id;
  picker.append(el("span", "secondary-button", "选择 CSV 文件"), chosen);
  const result = el("div");
  result.id = "roster-result";
  const upload = action("导入名册", async () => {
    if (!file.files.length) { toast("请选择 CSV 文件"); return; }
    const body = await file.files[0].arrayBuffer();
    try {
      const done = await call("POST", `/api/auth/institutions/${inst()}/roster`, body, { raw: true, contentType: "text/csv" });
      result.replaceChildren(el("p", null, `已导入 ${done.imported} 人（新增 ${done.created}，更新 ${done.updated}）`));
      toast("名册已导入", true);
    } catch (error) {
      const list = el("ul", "errors");
      for (const row of Array.isArray(error.errors) ? error.errors : []) {
        const what = fieldErrors(row.errors).map(([path, text]) => fieldLabelled(path, text, ROSTER_FIELDS)).join("；");
        list.append(el("li", null, `第 ${row.row} 行 — ${what}`));
      }
      result.replaceChildren(el("p", "errors", error.message), list);
    }
  });
  const roster = (await call("GET", `/api/auth/institutions/${inst()}/roster?limit=100`)).items;
  show("roster", card("导入名册", el("p", "muted", "CSV 表头：employee_no,name,phone,department_code[,nickname]；有一行出错则整份不导入。"),
    file, picker, upload, result),
    card(`名册（前 ${roster.length} 人）`, table([["employee_no", "工号"], ["name", "姓名"], ["nickname", "昵称"],
      [(r) => (r.user_id ? "已绑定" : "未绑定"), "绑定"]], roster)));
}

// -- reviews -----------------------------------------------------------------------------------------------

async function reviewsPage() {
  const items = (await call("GET", `/api/activities/reviews?institution_id=${inst()}`)).items;
  const decide = (item) => {
    const wrap = el("span");
    wrap.append(action("通过", async () => {
      await call("POST", `/api/activities/reviews/${item.id}/approve`, { note: "管理后台审核通过" });
      toast("已通过，积分将入账", true);
      await reviewsPage();
    }), " ", action("驳回", async () => {
      await call("POST", `/api/activities/reviews/${item.id}/reject`, { note: "管理后台驳回" });
      toast("已驳回", true);
      await reviewsPage();
    }, "danger"));
    return wrap;
  };
  const list = table([["id", "编号"], [(a) => TYPES[a.type] || a.type, "行为"], [(a) => `${a.quantity} ${a.unit}`, "数量"],
                      ["reason", "原因"], [(a) => local(a.occurred_at), "时间"], [decide, "处理"]], items);
  list.id = "reviews";
  show("reviews", card(`待审核（${items.length}）`, items.length ? list : el("p", "muted", "没有待审核的行为")));
}

// -- devices -----------------------------------------------------------------------------------------------

let unseen = null;
const DEVICE_KINDS = [["screen", "办公室屏幕"], ["station", "站点平板"], ["operator", "充电运营商"]];
const DEVICE_KIND_NAMES = Object.fromEntries(DEVICE_KINDS);

async function devicesPage(credential = null) {
  // ``credential``: the card of a credential just made, shown with the list it is now in (and never again).
  const items = (await call("GET", `/api/auth/devices?institution_id=${inst()}`)).items;
  const shown = el("div");
  shown.id = "credential";
  const { form: f } = form([
    { name: "kind", label: "类型", options: DEVICE_KINDS },
    { name: "name", label: "名称" },
  ], "生成凭证", async (inputs) => {
    // Made with anyTurn: a credential is shown only once, so its answer is kept even if the admin moved on.
    const made = await call("POST", "/api/auth/devices", { kind: inputs.kind.value, institution_id: inst(), name: inputs.name.value },
                            { anyTurn: true });
    const secret = made.token || `${made.key_id} / ${made.secret}`;
    const opens = inputs.kind.value === "screen" ? [`在屏幕的浏览器中打开：`, `${location.origin}/screen/${inst()}#token=${made.token}`]
      : inputs.kind.value === "station" ? [`在站点平板中打开（换成站点编号）：`, `${location.origin}/station/<站点编号>#token=${made.token}`]
        : ["运营商按接口文档用此密钥签名请求", null];
    const shownOnce = card("凭证只显示这一次", el("p", "secret", secret), el("p", "muted", opens[0]));
    if (opens[1]) shownOnce.append(el("p", "secret address", opens[1]));
    if (currentPath() === "devices") await devicesPage(shownOnce);
    else unseen = shownOnce;  // shown when the devices page is next opened
  });
  const revoke = (d) => (d.revoked_at ? "已撤销" : action("撤销", async () => {
    await call("DELETE", `/api/auth/devices/${d.id}`);
    toast("已撤销", true);
    await devicesPage();
  }, "danger"));
  if (!credential && unseen) [credential, unseen] = [unseen, null];
  if (credential) shown.append(credential);
  show("devices", card("设备", table([["name", "名称"], [(d) => DEVICE_KIND_NAMES[d.kind] || d.kind, "类型"], [(d) => local(d.created_at), "创建"], [revoke, "操作"]], items)),
                       card("新设备", f), shown);
}

// -- statistics --------------------------------------------------------------------------------------------

async function download(path, name) {
  const blob = await call("GET", path);
  const a = el("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
}

function bars(items, label) {
  const box = el("div", "bars");
  const max = Math.max(1, ...items.map((i) => i.carbon_g));
  for (const item of items) {
    const row = el("div", "bar");
    const fill = el("i");
    fill.style.width = (100 * item.carbon_g) / max + "%";
    const track = el("span");
    track.append(fill);
    row.append(el("span", null, label(item)), track, el("span", null, `${kg(item.carbon_g)} · ${item.points} 分`));
    box.append(row);
  }
  return items.length ? box : el("p", "muted", "该时段没有数据");
}

function dayChart(stats) {
  // Carbon per local day as columns, a day with nothing recorded shown as an empty column.
  const byDay = Object.fromEntries(stats.items.map((i) => [i.key, i]));
  const days = [];
  for (let d = new Date(stats.from + "T00:00:00Z"); d <= new Date(stats.to + "T00:00:00Z"); d.setUTCDate(d.getUTCDate() + 1)) {
    const key = d.toISOString().slice(0, 10);
    days.push(byDay[key] || { key, carbon_g: 0, points: 0, actions: 0 });
  }
  const max = Math.max(1, ...days.map((i) => i.carbon_g));
  const chart = el("div", "columns-chart");
  chart.id = "day-chart";
  chart.style.gridTemplateColumns = `repeat(${days.length}, minmax(0, 1fr))`;
  for (const day of days) {
    const column = el("div", "column");
    column.title = `${day.key}：${kg(day.carbon_g)}，${day.points} 分，${day.actions} 次`;
    const fill = el("i");
    fill.style.height = (100 * day.carbon_g) / max + "%";
    const track = el("span");
    track.append(fill);
    column.append(track, el("small", null, day.key.slice(5)));
    chart.append(column);
  }
  const legend = el("p", "muted", `最高 ${kg(max)}／天；悬停柱子查看当日数据`);
  const box = el("div");
  box.append(chart, legend);
  return box;
}

async function statsPage() {
  const q = `institution_id=${inst()}`;
  const [days, types, depts] = await Promise.all(["day", "type", "department"].map(
    (g) => call("GET", `/api/points/stats?${q}&group_by=${g}`)));
  const month = document.createElement("input");
  month.type = "month";
  month.id = "month";
  month.value = new Date().toISOString().slice(0, 7);
  show("stats",
    card(`近 30 天：减碳 ${kg(days.total.carbon_g)}，积分 ${days.total.points}，低碳行为 ${days.total.actions} 次`,
         dayChart(days)),
    columns(card("按行为", bars(types.items, (i) => TYPES[i.key] || i.key)), card("按部门", bars(depts.items, (i) => i.label))),
    card("月度报表", month, " ", action("下载月度 CSV", () => download(`/api/points/reports/monthly.csv?${q}&month=${month.value}`,
                                                                   `lvbao-${month.value}.csv`))));
}

// -- routing -----------------------------------------------------------------------------------------------

const ROUTES = { rules: rulesPage, stations: stationsPage, rewards: rewardsPage, roster: rosterPage, reviews: reviewsPage,
                 devices: devicesPage, stats: statsPage };

function currentPath() {
  return location.hash.replace(/^#\/?/, "") || "rules";
}

function show(path, ...nodes) {
  // A page is drawn when its answers arrive; by then the admin may have moved on to another page, which stays.
  if (currentPath() === path) page.replaceChildren(...nodes);
}

async function route() {
  turn += 1;
  const path = currentPath();
  const sheet = path.match(/^stations\/(\d+)\/sheet$/);
  const name = sheet ? "stations" : path;
  const menu = document.getElementById("menu");
  if (!stored(KEYS.access) || name === "login") {
    pageChanged("login");
    menu.hidden = true;
    document.getElementById("logout").hidden = true;
    loginPage();
    return;
  }
  if (!sheet && !ROUTES[name]) { location.hash = "#/rules"; return; }  // its hashchange draws the page
  pageChanged(path);
  menu.hidden = false;
  document.getElementById("logout").hidden = false;
  for (const a of menu.querySelectorAll("a")) a.classList.toggle("on", a.getAttribute("href") === "#/" + name);
  try {
    await ensureScope();
    await (sheet ? sheetPage(Number(sheet[1])) : ROUTES[name]());
  } catch (error) {
    if (error instanceof Stale) return;
    show(path, card("出错了", el("p", null, error.message), action("重试", route, "secondary")));
  }
}

document.getElementById("logout").addEventListener("click", async () => {
  // The refresh token is revoked on the server; the access token lapses within its 15 minutes.
  const refresh = stored(KEYS.refresh);
  if (refresh) {
    await call("POST", "/api/auth/logout", { refresh_token: refresh }, { anyTurn: true, noRefresh: true }).catch(() => null);
  }
  signOut();
});
window.addEventListener("hashchange", route);
route();
