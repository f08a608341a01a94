// A station's printable sheet: one A4 page per day, each with that day's code as a large QR.
import { TYPES } from "/web/vocabulary.js";
import { Dropped } from "/web/http.js";
import { card, el, errorText, toast } from "/web/widgets.js";
import { action } from "/web/admin/ui.js";
import { windowsText } from "/web/admin/pages/stations.js";

const ASK = { canteen: `${TYPES.clean_plate} · 用餐后请扫码`, sorting: `${TYPES.waste_sorting} · 投放后请扫码` };

function sheetPageOf(station, day, url) {
  const img = el("img");
  img.src = url;
  img.alt = `${day.date} 二维码`;
  img.dataset.code = day.code;
  const when = new Date(day.date + "T12:00:00+08:00").toLocaleDateString("zh-CN",
    { timeZone: "Asia/Shanghai", year: "numeric", month: "long", day: "numeric", weekday: "long" });
  const page = el("section", "sheet-page");
  page.append(el("p", "sheet-brand", "绿宝碳汇 · 低碳积分"), el("h1", null, station.name),
    el("p", "sheet-kind", ASK[station.kind] || ASK.sorting), el("p", "sheet-date", when), img,
    el("p", null, "开放时段：" + windowsText(station.windows, "–", "　")),
    el("p", "sheet-note", "请用“绿宝碳汇”小程序扫码 · 本码仅限当日使用 · 每个时段每人记录一次"),
    el("p", "sheet-code", day.code));
  return page;
}

export default async function sheetPage(ctx, stationId) {
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
    const sheet = await ctx.call("GET", `/api/activities/stations/${stationId}/sheet?from=${start.value}&days=${count.value}`);
    const images = await Promise.all(sheet.days.map((d) => ctx.call("GET", d.svg_url, undefined, { as: "blob" })));
    for (const url of urls.splice(0)) URL.revokeObjectURL(url);
    pages.replaceChildren(...sheet.days.map((day, n) => {
      const url = URL.createObjectURL(images[n]);
      urls.push(url);
      return sheetPageOf(sheet.station, day, url);
    }));
  };
  const controls = card("打印站点二维码", el("p", "muted", "每页一天；打印后按日期张贴。更换站点密钥会使已打印的二维码全部作废。"),
    el("label", "inline", "起始日期"), start, " ", el("label", "inline", "天数"), count, " ",
    action("生成", render, "secondary"), " ", action("打印", () => window.print()), " ",
    action("返回站点", () => { location.hash = "#/stations"; }, "secondary"));
  controls.classList.add("no-print");
  const rerender = () => render().catch((e) => { if (!(e instanceof Dropped)) toast(errorText(e)); });
  start.addEventListener("change", rerender);
  count.addEventListener("change", rerender);
  ctx.show(controls, pages);
  await render();
}
