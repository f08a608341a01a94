// The admin console: sign-in, the session (tokens in sessionStorage, refreshed once when they expire) and the
// router over its pages (pages/*.js), over the public API. An institution admin works in their institution;
// the province admin picks one. Each route's calls carry its AbortSignal (router.js): a page the admin has
// left neither draws nor speaks.
import { createClient, Dropped, tokenRefresher } from "/web/http.js";
import { createRouter, pageScope } from "/web/router.js";
import { $, card, el, toastOnNextPage } from "/web/widgets.js";
import { action, form } from "/web/admin/ui.js";
import devicesPage from "/web/admin/pages/devices.js";
import reviewsPage from "/web/admin/pages/reviews.js";
import rewardsPage from "/web/admin/pages/rewards.js";
import rosterPage from "/web/admin/pages/roster.js";
import rulesPage from "/web/admin/pages/rules.js";
import sheetPage from "/web/admin/pages/sheet.js";
import stationsPage from "/web/admin/pages/stations.js";
import statsPage from "/web/admin/pages/stats.js";

const KEYS = { access: "lvbao.admin.access", refresh: "lvbao.admin.refresh" };
const ROUTES = { rules: rulesPage, stations: stationsPage, rewards: rewardsPage, roster: rosterPage, reviews: reviewsPage,
                 devices: devicesPage, stats: statsPage };
const state = { me: null, institutionId: null };
const stored = (k) => sessionStorage.getItem(k);
const store = (k, v) => (v === null ? sessionStorage.removeItem(k) : sessionStorage.setItem(k, v));
const keepPair = (pair) => {
  store(KEYS.access, pair.access_token);
  store(KEYS.refresh, pair.refresh_token);
};

const client = createClient({
  token: () => stored(KEYS.access),
  refresh: tokenRefresher(() => stored(KEYS.refresh), keepPair),
  // The session has ended (refresh refused): sign in again, then back to this page.
  onSessionEnded: () => signOut("登录已失效，请重新登录"),
});
const router = createRouter();

// -- the session: who is signed in and which institution the pages are about ---------------------------------

// Aborted by every sign-in and sign-out: what was loaded or made for an earlier session is dropped.
let session = new AbortController();
let scoping = null;
let resume = null;  // after a session ended by itself: who it was and which institution they were in

function forgetScope() {
  session.abort();
  session = new AbortController();
  scoping = null;
}

function ensureScope() {
  // Loaded once per sign-in, shared by every route.
  if (!scoping) {
    const loading = loadScope(client.bound(session.signal)).catch((error) => {
      if (scoping === loading) scoping = null;  // the next route tries again
      throw error;
    });
    scoping = loading;
  }
  return scoping;
}

async function loadScope({ call }) {
  const me = await call("GET", "/api/auth/me");
  const institutions = (me.roles || []).includes("province_admin")
    ? (await call("GET", "/api/auth/institutions?limit=100")).items : null;
  const own = institutions ? null : await call("GET", `/api/auth/institutions/${me.institution_id}`);
  const scope = $("scope");
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
  $("who").textContent = me.username || me.nickname || "";
}

function signOut(why = null) {
  // Forget the tokens and everything the last admin's pages knew; ``why``: the session ended by itself.
  resume = why && state.me ? { admin: state.me.username || state.me.id, institutionId: state.institutionId } : null;
  router.leave();
  forgetScope();
  store(KEYS.access, null);
  store(KEYS.refresh, null);
  state.me = null;
  state.institutionId = null;
  $("scope").replaceChildren();
  $("who").textContent = "";
  if (why) {
    toastOnNextPage(why, false);
    route();  // the sign-in form, on this page's address
  } else {
    location.hash = "#/login";
  }
}

function loginPage(ctx) {
  const { form: f } = form([{ name: "username", label: "用户名" }, { name: "password", label: "密码", type: "password" }],
    "登录", async (inputs) => {
      const pair = await ctx.call("POST", "/api/auth/admin/login",
                                  { username: inputs.username.value, password: inputs.password.value }, { signedOut: true });
      keepPair(pair);
      forgetScope();  // whoever was signed in before, the scope is this admin's
      // Back to the page that asked for the sign-in (a bookmark, an expired session), or the rules.
      if (currentPath() === "login") location.hash = "#/rules";
      else route();
    });
  const box = card("管理员登录", f);
  box.classList.add("login");
  ctx.show(box);
}

// -- routing -----------------------------------------------------------------------------------------------

function currentPath() {
  return location.hash.replace(/^#\/?/, "") || "rules";
}

async function route() {
  const path = currentPath();
  const sheet = path.match(/^stations\/(\d+)\/sheet$/);
  const name = sheet ? "stations" : path;
  const menu = $("menu");
  if (!stored(KEYS.access) || name === "login") {
    menu.hidden = true;
    $("logout").hidden = true;
    loginPage(pageScope(router, client, "login"));
    return;
  }
  if (!sheet && !ROUTES[name]) { location.hash = "#/rules"; return; }  // its hashchange draws the page
  const ctx = {
    ...pageScope(router, client, path),
    inst: () => state.institutionId,
    // A credential is shown only once: it is made for the session, not the route, and kept if the admin moves on.
    session: client.bound(session.signal),
    showing: () => router.page,
    reroute: route,
  };
  menu.hidden = false;
  $("logout").hidden = false;
  for (const a of menu.querySelectorAll("a")) a.classList.toggle("on", a.getAttribute("href") === "#/" + name);
  try {
    await ensureScope();
    await (sheet ? sheetPage(ctx, Number(sheet[1])) : ROUTES[name](ctx));
  } catch (error) {
    if (error instanceof Dropped || ctx.signal.aborted) return;
    ctx.show(card("出错了", el("p", null, error.message), action("重试", route, "secondary")));
  }
}

$("logout").addEventListener("click", async () => {
  // The refresh token is revoked on the server; the access token lapses within its 15 minutes.
  const refresh = stored(KEYS.refresh);
  if (refresh) await client.request("POST", "/api/auth/logout", { refresh_token: refresh }, { noRefresh: true }).catch(() => null);
  signOut();
});
window.addEventListener("hashchange", route);
route();
