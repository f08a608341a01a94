// The review queue: actions held for a look (a trip too long for its time, one too many), approved or rejected.
import { REASONS, TYPES, UNITS } from "/web/vocabulary.js";
import { card, el, table, toast } from "/web/widgets.js";
import { action, local } from "/web/admin/ui.js";

export default async function reviewsPage(ctx) {
  const items = (await ctx.call("GET", `/api/activities/reviews?institution_id=${ctx.inst()}`)).items;
  const decide = (item) => {
    const wrap = el("span");
    wrap.append(action("通过", async () => {
      await ctx.call("POST", `/api/activities/reviews/${item.id}/approve`, { note: "管理后台审核通过" });
      toast("已通过，积分将入账", true);
      await reviewsPage(ctx);
    }), " ", action("驳回", async () => {
      await ctx.call("POST", `/api/activities/reviews/${item.id}/reject`, { note: "管理后台驳回" });
      toast("已驳回", true);
      await reviewsPage(ctx);
    }, "danger"));
    return wrap;
  };
  const list = table([["id", "编号"], [(a) => TYPES[a.type] || a.type, "行为"], [(a) => `${a.quantity} ${UNITS[a.unit] || a.unit}`, "数量"],
                      [(a) => REASONS[a.reason] || a.reason, "原因"], [(a) => local(a.occurred_at), "时间"], [decide, "处理"]], items);
  list.id = "reviews";
  ctx.show(card(`待审核（${items.length}）`, items.length ? list : el("p", "muted", "没有待审核的行为")));
}
