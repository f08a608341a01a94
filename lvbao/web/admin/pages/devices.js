// Devices: office screens, station tablets and charging operators, each with a credential shown only once,
// and revoked at once.
import { card, el, table, toast } from "/web/widgets.js";
import { action, form, local } from "/web/admin/ui.js";

const DEVICE_KINDS = [["screen", "办公室屏幕"], ["station", "站点平板"], ["operator", "充电运营商"]];
const DEVICE_KIND_NAMES = Object.fromEntries(DEVICE_KINDS);
let unseen = null;  // a credential made while the admin was on another page: shown when this page is next open

function credentialCard(kind, institutionId, made) {
  const secret = made.token || `${made.key_id} / ${made.secret}`;
  const opens = kind === "screen" ? ["在屏幕的浏览器中打开：", `${location.origin}/screen/${institutionId}#token=${made.token}`]
    : kind === "station" ? ["在站点平板中打开（换成站点编号）：", `${location.origin}/station/<站点编号>#token=${made.token}`]
      : ["运营商按接口文档用此密钥签名请求", null];
  const shownOnce = card("凭证只显示这一次", el("p", "secret", secret), el("p", "muted", opens[0]));
  if (opens[1]) shownOnce.append(el("p", "secret address", opens[1]));
  return shownOnce;
}

export default async function devicesPage(ctx, credential = null) {
  // ``credential``: the card of a credential just made, shown with the list it is now in (and never again).
  const items = (await ctx.call("GET", `/api/auth/devices?institution_id=${ctx.inst()}`)).items;
  const shown = el("div");
  shown.id = "credential";
  const { form: f } = form([
    { name: "kind", label: "类型", options: DEVICE_KINDS },
    { name: "name", label: "名称" },
  ], "生成凭证", async (inputs) => {
    const kind = inputs.kind.value;
    const institutionId = ctx.inst();
    // Made for the session, not this route: its answer is kept even if the admin moves on meanwhile.
    const made = await ctx.session.call("POST", "/api/auth/devices", { kind, institution_id: institutionId, name: inputs.name.value });
    const shownOnce = credentialCard(kind, institutionId, made);
    if (!ctx.signal.aborted) {
      await devicesPage(ctx, shownOnce);
    } else {
      unseen = shownOnce;
      if (ctx.showing() === "devices") ctx.reroute();  // back on this page already: draw it with the credential
    }
  });
  const revoke = (d) => (d.revoked_at ? "已撤销" : action("撤销", async () => {
    await ctx.call("DELETE", `/api/auth/devices/${d.id}`);
    toast("已撤销", true);
    await devicesPage(ctx);
  }, "danger"));
  if (!credential && unseen) [credential, unseen] = [unseen, null];
  if (credential) shown.append(credential);
  ctx.show(card("设备", table([["name", "名称"], [(d) => DEVICE_KIND_NAMES[d.kind] || d.kind, "类型"], [(d) => local(d.created_at), "创建"], [revoke, "操作"]], items)),
           card("新设备", f), shown);
}
