// Stations: the list with their windows, a new station, an editor, a new signing secret, and the way to the
// printable sheet of a station without a screen.
import { STATION_KINDS } from "/web/vocabulary.js";
import { card, el, table, toast } from "/web/widgets.js";
import { action, editor, form } from "/web/admin/ui.js";

export const windowsText = (windows, between = "-", joiner = "\n") =>
  windows.map((w) => `${w.name} ${w.start}${between}${w.end}`).join(joiner);

function windowsFrom(text) {
  // One window a line: "午餐 11:00-13:30".
  return text.split("\n").map((l) => l.trim()).filter(Boolean).map((line) => {
    const [name, span] = line.split(/\s+/);
    const [start, end] = (span || "").split("-");
    return { name, start, end };
  });
}

export default async function stationsPage(ctx) {
  const stations = (await ctx.call("GET", `/api/activities/stations?institution_id=${ctx.inst()}`)).items;
  const editing = el("div");
  editing.id = "station-editor";
  const { form: f } = form([
    { name: "name", label: "站点名称" }, { name: "kind", label: "类型", options: Object.entries(STATION_KINDS) },
    { name: "printed_codes", label: "接受打印二维码", options: [["false", "否（只用站点屏幕）"], ["true", "是（无屏幕站点）"]] },
    { name: "windows", label: "开放时段（每行：名称 开始-结束）", type: "textarea", wide: true, value: "午餐 11:00-13:30\n晚餐 17:00-19:00" },
  ], "新建站点", async (inputs) => {
    await ctx.call("POST", "/api/activities/stations", { institution_id: ctx.inst(), name: inputs.name.value, kind: inputs.kind.value,
      windows: windowsFrom(inputs.windows.value), printed_codes: inputs.printed_codes.value === "true" });
    toast("站点已创建", true);
    await stationsPage(ctx);
  });
  const edit = (s) => action("编辑", () => editor(editing, `编辑站点：${s.name}`, [
    { name: "name", label: "站点名称", value: s.name },
    { name: "active", label: "状态", options: [["true", "启用"], ["false", "停用"]], value: String(s.active) },
    { name: "printed_codes", label: "接受打印二维码", options: [["false", "否"], ["true", "是"]], value: String(s.printed_codes) },
    { name: "windows", label: "开放时段（每行：名称 开始-结束）", type: "textarea", wide: true, value: windowsText(s.windows) },
  ], "保存", async (inputs) => {
    await ctx.call("PATCH", `/api/activities/stations/${s.id}`, { name: inputs.name.value, active: inputs.active.value === "true",
      printed_codes: inputs.printed_codes.value === "true", windows: windowsFrom(inputs.windows.value) });
    toast("站点已保存", true);
    await stationsPage(ctx);
  }), "secondary");
  const rotate = (s) => action("更换密钥", async () => {
    if (!confirm(`更换“${s.name}”的签名密钥？屏幕上的二维码会立即更新，已打印的二维码全部作废。`)) return;
    await ctx.call("PATCH", `/api/activities/stations/${s.id}`, { rotate_secret: true });
    toast("密钥已更换，已打印的二维码作废", true);
  }, "secondary");
  const print = (s) => (s.printed_codes && s.active ? action("打印二维码", () => { location.hash = `#/stations/${s.id}/sheet`; }, "secondary")
    : el("span", "muted", s.active ? "未开启打印" : "已停用"));
  const tools = (s) => {
    const wrap = el("span", "tools");
    wrap.append(edit(s), rotate(s), print(s));
    return wrap;
  };
  const list = table([["id", "编号"], ["name", "名称"], [(s) => STATION_KINDS[s.kind] || s.kind, "类型"],
    [(s) => windowsText(s.windows, "-", "，"), "时段"], [(s) => (s.active ? "启用" : "停用"), "状态"],
    [(s) => (s.printed_codes ? "接受" : "不接受"), "打印码"], [tools, "操作"]], stations);
  list.id = "stations";
  ctx.show(card("站点", list,
    el("p", "muted", "有屏幕的站点：在“设备”中为站点平板生成凭证，打开 /station/<编号>#token=<凭证>，二维码每 30 秒更新。"
      + "没有屏幕的站点（如垃圾分类点）：开启“接受打印二维码”后打印，每张二维码仅在其日期当天有效。")),
    editing, card("新建站点", f));
}
