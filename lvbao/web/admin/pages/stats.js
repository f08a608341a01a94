// Statistics: carbon per day for the last 30 days, by action type and by department, and the monthly CSV.
import { TYPES } from "/web/vocabulary.js";
import { card, el } from "/web/widgets.js";
import { action, columns, download, kg } from "/web/admin/ui.js";

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

export default async function statsPage(ctx) {
  const q = `institution_id=${ctx.inst()}`;
  const [days, types, depts] = await Promise.all(["day", "type", "department"].map(
    (g) => ctx.call("GET", `/api/points/stats?${q}&group_by=${g}`)));
  const month = document.createElement("input");
  month.type = "month";
  month.id = "month";
  month.value = new Date().toISOString().slice(0, 7);
  ctx.show(
    card(`近 30 天：减碳 ${kg(days.total.carbon_g)}，积分 ${days.total.points}，低碳行为 ${days.total.actions} 次`,
         dayChart(days)),
    columns(card("按行为", bars(types.items, (i) => TYPES[i.key] || i.key)), card("按部门", bars(depts.items, (i) => i.label))),
    card("月度报表", month, " ", action("下载月度 CSV", () => download(ctx, `/api/points/reports/monthly.csv?${q}&month=${month.value}`,
                                                                   `lvbao-${month.value}.csv`))));
}
