// The mini-program stand-in: the WeChat mini-program's pages as a phone-sized web app that calls only the
// public API. `wx.login` is the mock WeChat's /mock/login (this browser keeps one WeChat identity, its openid),
// the getPhoneNumber button its /mock/phone-code, `wx.scanCode` a text field for the code a scan would return.
import { createClient, Dropped, newIdempotencyKey, tokenRefresher } from "/web/http.js";
import { createRouter, pageScope } from "/web/router.js";
import {
  ACTION_STATUSES, ENTRY_KINDS, MODES, REASONS, REDEMPTION_STATUSES, TYPES, UNITS,
} from "/web/vocabulary.js";
import { $, card, el, errorText, toast, toastOnNextPage } from "/web/widgets.js";

const KEYS = { access: "lvbao.mini.access", refresh: "lvbao.mini.refresh", openid: "lvbao.mini.openid",
               after: "lvbao.mini.after" };  // the page to return to after a sign-in it was sent to
// The fields this app sends, as a refused request names them to the employee.
const FIELDS = { distance_km: "距离", mode: "出行方式", occurred_at: "时间", code: "二维码", nickname: "昵称",
                 invite_code: "邀请码", phone_code: "手机号授权", reward_id: "奖品" };
// The action type each unit counts (a receipt names only its unit).
const TYPE_OF_UNIT = { km: "commute", meal: "clean_plate", check_in: "waste_sorting", kwh: "ev_charging" };

const stored = (key) => { try { return localStorage.getItem(key); } catch (e) { return null; } };
const store = (key, value) => {
  try { value === null ? localStorage.removeItem(key) : localStorage.setItem(key, value); } catch (e) { /* memory */ }
};
const kg = (grams) => (grams / 1000).toLocaleString("zh-CN", { maximumFractionDigits: 2 });

// -- the API (the pages' shared client, http.js) and the session -------------------------------------------

const refreshTokens = tokenRefresher(() => stored(KEYS.refresh), (pair) => {
  store(KEYS.access, pair.access_token);
  store(KEYS.refresh, pair.refresh_token);
});
const client = createClient({
  token: () => stored(KEYS.access),
  refresh: refreshTokens,
  onSessionEnded: () => signOut("登录已失效，请重新登录"),
});
const router = createRouter();

function signOut(why = null) {
  // ``why``: the session ended by itself (refresh refused); the sign-in page says so and leads back here.
  store(KEYS.access, null);
  store(KEYS.refresh, null);
  if (why && location.hash === "#/login") {
    toast(why);  // already on the sign-in page: no page change to carry the message to
    return;
  }
  router.leave();  // the page's calls in flight are dropped
  if (why) {
    rememberPage();
    toastOnNextPage(why, false);
  } else {
    store(KEYS.after, null);  // signed out on purpose: the next sign-in starts at home
  }
  location.hash = "#/login";
}

function rememberPage() {
  if (/^#\/(?!login\b|bind\b)\w/.test(location.hash)) store(KEYS.after, location.hash);
}

// -- small UI pieces ---------------------------------------------------------------------------------------

function field(labelText, input) {
  const wrap = el("div");
  const label = el("label", null, labelText);
  input.id = input.id || "f-" + Math.random().toString(36).slice(2);
  label.htmlFor = input.id;
  wrap.append(label, input);
  return wrap;
}

function input(type, attrs = {}) {
  const node = document.createElement(type === "select" ? "select" : type === "textarea" ? "textarea" : "input");
  if (type !== "select" && type !== "textarea") node.type = type;
  Object.assign(node, attrs);
  return node;
}

function button(text, onClick, className) {
  const node = el("button", className, text);
  node.type = "button";
  node.addEventListener("click", async () => {
    node.disabled = true;
    try {
      await onClick();
    } catch (error) {
      if (!(error instanceof Dropped)) toast(errorText(error, FIELDS));  // nothing for a page the user has left
    } finally {
      node.disabled = false;
    }
  });
  return node;
}

function show(ctx, title, ...nodes) {
  // A page is drawn when its answers arrive, unless the user has moved on to another page by then.
  if (ctx.show(...nodes)) $("title").textContent = title;
}

function link(text, href) {
  const a = el("a", null, text);
  a.href = href;
  return a;
}

function describeAction(item) {
  const what = item.type === "commute" ? TYPES.commute + "·" + (MODES[item.mode] || item.mode) : TYPES[item.type] || item.type;
  return what + (item.unit === "km" ? " " + item.quantity + " 公里" : "");
}

// A receipt names its unit, and so its kind of action (a commute also its mode).
function actionOf(receipt) {
  const type = TYPES[TYPE_OF_UNIT[receipt.unit]] || "";
  return receipt.unit === "km" ? type + "·" + (MODES[receipt.variant] || receipt.variant) : type;
}

function explainReceipt(entry) {
  const r = entry.receipt || {};
  if (entry.kind === "debit") return "兑换奖品扣除积分";
  if (entry.kind === "refund") return "兑换取消或过期，积分退回";
  if (r.note && !r.factor_g_per_unit) return r.note;
  if (!r.factor_g_per_unit) return "";
  const unit = UNITS[r.unit] || r.unit;
  let text = `${r.quantity} ${unit} × ${r.factor_g_per_unit} 克/${unit} = ${r.carbon_g} 克 CO₂e；每 ${r.g_per_point} 克计 1 分`;
  if (r.capped) text += `，按当日上限计 ${r.points} 分（原应 ${r.uncapped_points} 分）`;
  else text += `，得 ${r.points} 分`;
  return text;
}

// -- pages -------------------------------------------------------------------------------------------------

async function loginPage(ctx) {
  const nickname = input("text", { placeholder: "微信昵称（可不填）", maxLength: 32 });
  show(ctx, "登录", card("欢迎使用绿宝碳汇", el("p", "muted", "公共机构低碳积分：绿色出行、光盘行动、垃圾分类都能攒积分。"),
    field("昵称", nickname),
    button("微信一键登录", async () => {
      let openid = stored(KEYS.openid);
      if (!openid) { openid = "o-mini-" + newIdempotencyKey().slice(0, 16); store(KEYS.openid, openid); }
      const login = await ctx.call("POST", "/mock-wechat/mock/login", { openid, nickname: nickname.value || null });
      const pair = await ctx.call("POST", "/api/auth/wechat/login", { code: login.code });
      store(KEYS.access, pair.access_token);
      store(KEYS.refresh, pair.refresh_token);
      const after = stored(KEYS.after);
      store(KEYS.after, null);
      location.hash = pair.user.bound ? after || "#/home" : "#/bind";
    })));
}

async function bindPage(ctx) {
  const phone = input("tel", { placeholder: "单位名册登记的手机号", maxLength: 11, inputMode: "numeric" });
  const invite = input("text", { placeholder: "管理员发放的邀请码", maxLength: 32 });
  const done = async (answer) => {
    await refreshTokens();  // tokens that carry the binding
    toastOnNextPage(`已绑定：${answer.nickname}`);
    location.hash = "#/home";
  };
  show(ctx, "绑定单位身份",
    card("手机号绑定", el("p", "muted", "授权微信手机号，与单位名册匹配。"), field("手机号", phone),
      button("授权手机号并绑定", async () => {
        const code = await ctx.call("POST", "/mock-wechat/mock/phone-code", { phone: phone.value.trim() });
        await done(await ctx.call("POST", "/api/auth/bind", { phone_code: code.code }));
      })),
    card("邀请码绑定", field("邀请码", invite),
      button("使用邀请码绑定", async () => {
        await done(await ctx.call("POST", "/api/auth/bind", { invite_code: invite.value.trim() }));
      }, "secondary")));
}

async function homePage(ctx) {
  const [me, board] = await Promise.all([
    ctx.call("GET", "/api/points/me"),
    ctx.call("GET", "/api/points/leaderboards?period=week&limit=1").catch(() => null),
  ]);
  const rank = board && board.me ? `第 ${board.me.rank} 名 / ${board.total} 人` : "本周尚未上榜";
  const stats = el("div", "grid2");
  for (const [label, value] of [["今日减碳", kg(me.today.carbon_g) + " 千克"], ["本周减碳", kg(me.week.carbon_g) + " 千克"],
                                ["今日积分", me.today.points], ["本周排名", rank]]) {
    const box = el("div", "stat", label);
    box.append(el("b", null, value));
    stats.append(box);
  }
  const balance = card("我的积分", el("div", "big", me.balance.toLocaleString("zh-CN")),
                       el("p", "muted", `累计减碳 ${kg(me.carbon_g)} 千克 · 累计获得 ${me.lifetime_points} 分`));
  balance.querySelector(".big").id = "balance";
  const actions = el("div", "actions");
  actions.append(link("记录出行", "#/commute"), link("扫码打卡", "#/scan"), link("积分明细", "#/ledger"));
  show(ctx, "绿宝碳汇", balance, card(null, stats), actions, card(null, link("我的兑换记录", "#/redemptions")));
}

async function commutePage(ctx) {
  const mode = input("select");
  for (const [value, label] of Object.entries(MODES)) mode.append(new Option(label, value));
  const distance = input("number", { min: "0.1", step: "0.1", placeholder: "例如 8.5" });
  const result = el("div");
  show(ctx, "记录出行", card("绿色出行", field("出行方式", mode), field("距离（公里）", distance),
    button("提交", async () => {
      const km = Number(distance.value);
      if (!(km > 0)) { toast("请填写出行距离"); return; }
      const action = await ctx.write("POST", "/api/activities/actions", {
        type: "commute", mode: mode.value, distance_km: km, occurred_at: new Date().toISOString() });
      result.replaceChildren(actionResult(action));
      toast(action.status === "accepted" ? "已记录，积分稍后到账" : ACTION_STATUSES[action.status], action.status === "accepted");
    })), result);
}

function actionResult(action) {
  const box = card("提交结果", el("p", null, describeAction(action)));
  const status = el("span", "status " + action.status, ACTION_STATUSES[action.status] || action.status);
  status.id = "action-status";
  box.append(status);
  if (action.reason) box.append(el("p", "muted", "原因：" + (REASONS[action.reason] || action.reason)));
  box.append(el("p", null, ""), link("查看积分明细", "#/ledger"));
  return box;
}

async function scanPage(ctx) {
  const code = input("textarea", { rows: 3, placeholder: "扫一扫站点二维码（此处粘贴扫码得到的内容）" });
  const result = el("div");
  show(ctx, "扫码打卡", card("扫站点二维码", el("p", "muted", "扫食堂回盘处、垃圾分类点屏幕上或张贴的二维码。"), field("二维码内容", code),
    button("提交", async () => {
      if (!code.value.trim()) { toast("请先扫码"); return; }
      const action = await ctx.write("POST", "/api/activities/scans", { code: code.value.trim() });
      result.replaceChildren(actionResult(action));
      toast("打卡成功", true);
    })), result);
}

async function ledgerPage(ctx) {
  const ledger = await ctx.call("GET", "/api/points/me/ledger?limit=50");
  const list = el("ul", "list");
  list.id = "ledger";
  for (const entry of ledger.items) {
    const item = el("li");
    const row = el("div", "row");
    const r = entry.receipt || {};
    const title = ENTRY_KINDS[entry.kind] + (entry.source.type === "action" && r.unit ? " · " + actionOf(r) : "");
    row.append(el("span", null, title), el("span", entry.points >= 0 ? "plus" : "minus",
                                           (entry.points >= 0 ? "+" : "") + entry.points + " 分"));
    item.append(row, el("p", "receipt", explainReceipt(entry)),
                el("p", "muted", new Date(entry.created_at).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai" })
                                  + " · 余额 " + entry.balance_after));
    list.append(item);
  }
  show(ctx, "积分明细", ledger.items.length ? list : card(null, el("p", "muted", "还没有积分记录")));
}

const boardState = { scope: "institution", period: "week" };
async function boardsPage(ctx) {
  const path = `/api/points/leaderboards?scope=${boardState.scope}&period=${boardState.period}&limit=50`;
  const board = await ctx.call("GET", path);
  const switcher = (options, key) => {
    const box = el("div", "switch");
    for (const [value, label] of options) {
      const b = button(label, async () => { boardState[key] = value; await boardsPage(ctx); },
                       boardState[key] === value ? "on" : "");
      box.append(b);
    }
    return box;
  };
  const list = el("ul", "list");
  list.id = "board";
  for (const entry of board.entries) {
    const item = el("li", "row");
    const who = el("span");
    who.append(el("span", "rank", entry.rank), document.createTextNode(entry.nickname),
               el("span", "muted", entry.department ? " · " + entry.department : ""));
    item.append(who, el("span", "plus", entry.points + " 分"));
    list.append(item);
  }
  const mine = board.me ? `我的排名：第 ${board.me.rank} 名，${board.me.points} 分${board.me.hidden ? "（已隐藏，仅自己可见）" : ""}`
                        : "本期还没有积分，快去绿色出行吧";
  show(ctx, "排行榜", switcher([["institution", "本单位"], ["department", "本部门"]], "scope"),
       switcher([["day", "今日"], ["week", "本周"], ["month", "本月"], ["all", "总榜"]], "period"),
       card(null, el("p", null, mine)), board.entries.length ? list : card(null, el("p", "muted", "暂无上榜")));
}

async function rewardsPage(ctx) {
  const [me, catalog] = await Promise.all([ctx.call("GET", "/api/points/me"), ctx.call("GET", "/api/rewards/catalog")]);
  const list = el("ul", "list");
  list.id = "catalog";
  for (const item of catalog.items) {
    const li = el("li");
    const row = el("div", "row");
    row.append(el("strong", null, item.name), el("span", "plus", item.points_cost + " 分"));
    li.append(row, el("p", "muted", (item.description || "") + ` · 库存 ${item.stock}`),
              button("兑换", async () => {
                const redemption = await ctx.write("POST", "/api/rewards/redemptions", { reward_id: item.id });
                location.hash = "#/redemption/" + redemption.id;
              }));
    list.append(li);
  }
  show(ctx, "积分兑换", card(null, el("p", null, `可用积分：${me.balance}`)),
       catalog.items.length ? list : card(null, el("p", "muted", "暂无可兑换的奖品")));
}

let pollTimer = null;
async function redemptionPage(ctx, id) {
  clearTimeout(pollTimer);
  const redemption = await ctx.call("GET", `/api/rewards/redemptions/${id}`);
  const status = el("span", "status " + redemption.status, REDEMPTION_STATUSES[redemption.status] || redemption.status);
  status.id = "redemption-status";
  const box = card(redemption.reward_name, status, el("p", "muted", `${redemption.points_cost} 分`));
  if (redemption.reason) box.append(el("p", null, "原因：" + (REASONS[redemption.reason] || redemption.reason)));
  if (redemption.status === "pending") {
    box.append(el("p", "muted", "正在确认积分…"));
    pollTimer = ctx.later(route, 1000);  // none once the user has left the page
  }
  if (redemption.pickup_code) {
    const img = el("img", "qr");
    img.alt = "领取二维码";
    img.id = "pickup-qr";
    box.append(el("p", null, "凭此码到服务台领取："), img, el("p", "code", redemption.pickup_code));
    if (redemption.expires_at) {
      box.append(el("p", "muted", "请于 " + new Date(redemption.expires_at).toLocaleDateString("zh-CN") + " 前领取"));
    }
    box.append(button("取消兑换（积分退回）", async () => {
      await ctx.write("POST", `/api/rewards/redemptions/${id}/cancel`);
      toast("已取消，积分已退回", true);
      await redemptionPage(ctx, id);
    }, "secondary"));
    ctx.call("GET", `/api/rewards/redemptions/${id}/pickup.png`, undefined, { as: "blob" })
      .then((blob) => { img.src = URL.createObjectURL(blob); })
      .catch((error) => { if (!(error instanceof Dropped)) toast(error.message); });
  }
  show(ctx, "兑换详情", box, card(null, link("我的兑换记录", "#/redemptions")));
}

async function redemptionsPage(ctx) {
  const mine = await ctx.call("GET", "/api/rewards/redemptions?mine=true&limit=50");
  const list = el("ul", "list");
  for (const r of mine.items) {
    const li = el("li", "row");
    li.append(link(r.reward_name, "#/redemption/" + r.id), el("span", "status " + r.status, REDEMPTION_STATUSES[r.status]));
    list.append(li);
  }
  show(ctx, "我的兑换", mine.items.length ? list : card(null, el("p", "muted", "还没有兑换记录")));
}

async function settingsPage(ctx) {
  const [me, boards] = await Promise.all([ctx.call("GET", "/api/auth/me"), ctx.call("GET", "/api/points/me/boards")]);
  const visible = input("checkbox", { checked: boards.visible });
  visible.id = "visible";
  visible.style.width = "auto";
  visible.addEventListener("change", async () => {
    try {
      await ctx.call("PUT", "/api/points/me/boards", { visible: visible.checked });
      toast(visible.checked ? "已在排行榜显示" : "已从排行榜隐藏（仍计入部门）", true);
    } catch (error) {
      if (error instanceof Dropped) return;
      visible.checked = !visible.checked;
      toast(error.message);
    }
  });
  const row = el("label", "row");
  row.append(el("span", null, "在排行榜显示我的昵称"), visible);
  const nickname = input("text", { value: me.nickname, maxLength: 32, id: "nickname" });
  const rename = button("保存昵称", async () => {
    const saved = await ctx.call("PATCH", "/api/auth/me", { nickname: nickname.value });
    toast(`昵称已改为“${saved.nickname}”，排行榜稍后更新`, true);
  }, "secondary");
  show(ctx, "我的", card("账号", field("昵称（排行榜只显示昵称）", nickname), rename,
                    el("p", "muted", me.employee_no ? "工号 " + me.employee_no : "未绑定")),
       card("隐私", row),
       card(null, button("退出登录", async () => {
         await ctx.call("POST", "/api/auth/logout", { refresh_token: stored(KEYS.refresh) }).catch(() => null);
         signOut();
       }, "secondary")));
}

// -- routing -----------------------------------------------------------------------------------------------

const ROUTES = {
  login: loginPage, bind: bindPage, home: homePage, commute: commutePage, scan: scanPage, ledger: ledgerPage,
  boards: boardsPage, rewards: rewardsPage, redemptions: redemptionsPage, settings: settingsPage,
};
const TABS = { home: "home", commute: "home", scan: "home", ledger: "home", boards: "boards", rewards: "rewards",
               redemption: "rewards", redemptions: "rewards", settings: "settings" };

async function route() {
  const [name, arg] = location.hash.replace(/^#\/?/, "").split("/");
  const signedIn = Boolean(stored(KEYS.access));
  if (!signedIn && name !== "login") rememberPage();  // a bookmark opened signed out comes back after sign-in
  let target = !signedIn && name !== "login" ? "login" : name || (signedIn ? "home" : "login");
  if (target === "redemption" && !/^\d+$/.test(arg || "")) target = "redemptions";
  else if (target !== "redemption" && !ROUTES[target]) target = "home";
  const at = target === "redemption" ? `#/redemption/${arg}` : "#/" + target;
  if (location.hash !== at) { location.hash = at; return; }  // its hashchange draws the page
  const ctx = pageScope(router, client, at);
  const tabs = document.getElementById("tabs");
  tabs.hidden = target === "login" || target === "bind";
  for (const a of tabs.querySelectorAll("a")) a.classList.toggle("on", a.dataset.tab === TABS[target]);
  try {
    if (target === "redemption") await redemptionPage(ctx, arg);
    else await ROUTES[target](ctx);
  } catch (error) {
    if (error instanceof Dropped || ctx.signal.aborted) return;
    if (error.code === "not_bound") { location.hash = "#/bind"; return; }
    const retry = button("重试", route, "secondary");
    show(ctx, "绿宝碳汇", card("出错了", el("p", null, error.message || "加载失败"), retry));
  }
}

window.addEventListener("hashchange", route);
route();
