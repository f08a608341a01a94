// Rewards: the catalogue with stock changes, an editor, on and off the shelf, a new reward, and the
// redemptions as CSV.
import { card, el, table, toast } from "/web/widgets.js";
import { action, download, editor, form, numberOrNull, short } from "/web/admin/ui.js";

export default async function rewardsPage(ctx) {
  const items = (await ctx.call("GET", `/api/rewards/catalog?institution_id=${ctx.inst()}&limit=100`)).items;
  const stock = (item) => {
    const wrap = el("span", "tools");
    const delta = document.createElement("input");
    delta.type = "number";
    delta.style.width = "80px";
    delta.placeholder = "±数量";
    wrap.append(delta, action("调整库存", async () => {
      await ctx.call("POST", `/api/rewards/catalog/${item.id}/stock`, { delta: Number(delta.value), reason: "管理后台调整" });
      toast("库存已调整", true);
      await rewardsPage(ctx);
    }, "secondary"));
    return wrap;
  };
  const { form: f } = form([
    { name: "name", label: "名称" }, { name: "points_cost", label: "所需积分", type: "number", value: 100 },
    { name: "stock", label: "库存", type: "number", value: 10 }, { name: "per_user_limit", label: "每人限兑（空为不限）", type: "number" },
    { name: "description", label: "说明", wide: true },
  ], "新建奖品", async (inputs) => {
    await ctx.call("POST", "/api/rewards/catalog", { institution_id: ctx.inst(), name: inputs.name.value,
      description: inputs.description.value, points_cost: Number(inputs.points_cost.value), stock: Number(inputs.stock.value),
      per_user_limit: numberOrNull(inputs.per_user_limit.value) });
    toast("奖品已创建", true);
    await rewardsPage(ctx);
  });
  const shelf = (item) => action(item.active === false ? "上架" : "下架", async () => {
    await ctx.call("PATCH", `/api/rewards/catalog/${item.id}`, { active: item.active === false });
    toast(item.active === false ? "已上架" : "已下架", true);
    await rewardsPage(ctx);
  }, "secondary");
  const editing = el("div");
  editing.id = "reward-editor";
  const edit = (item) => action("编辑", () => editor(editing, `编辑奖品：${item.name}`, [
    { name: "name", label: "名称", value: item.name },
    { name: "points_cost", label: "所需积分（之后的兑换生效）", type: "number", value: item.points_cost },
    { name: "per_user_limit", label: "每人限兑（空为不限）", type: "number", value: item.per_user_limit ?? "" },
    { name: "description", label: "说明", wide: true, value: item.description || "" },
  ], "保存", async (inputs) => {
    await ctx.call("PATCH", `/api/rewards/catalog/${item.id}`, { name: inputs.name.value, description: inputs.description.value,
      points_cost: Number(inputs.points_cost.value), per_user_limit: numberOrNull(inputs.per_user_limit.value) });
    toast("奖品已保存", true);
    await rewardsPage(ctx);
  }), "secondary");
  const tools = (item) => {
    const wrap = el("span", "tools");
    wrap.append(edit(item), shelf(item));
    return wrap;
  };
  const list = table([["name", "名称"], [(r) => short(r.description, 24), "说明"], ["points_cost", "积分"], ["stock", "库存"], ["per_user_limit", "每人限兑"],
                      [(r) => (r.active === false ? "已下架" : "在售"), "状态"], [stock, "库存调整"], [tools, "操作"]], items);
  list.id = "rewards";
  ctx.show(card("奖品", list), editing, card("新建奖品", f),
    card(null, action("导出兑换记录 CSV", () => download(ctx, `/api/rewards/redemptions.csv?institution_id=${ctx.inst()}`, "redemptions.csv"), "secondary")));
}
