// Rules: the versions in force, each one's history, and a new version with a live preview of its receipt.
import { TYPES, UNITS } from "/web/vocabulary.js";
import { card, el, errorText, table, toast } from "/web/widgets.js";
import { action, form, local, numberOrNull, short } from "/web/admin/ui.js";

// The preview's request fields, as its message names them.
const RULE_FIELDS = { "rule.variants": "减碳因子", "rule.g_per_point": "每分克数", "rule.daily_cap_points": "每日积分上限",
                      "rule.source": "因子来源", "action.variant": "方式", "action.quantity": "示例数量" };
const typeName = (type) => TYPES[type] || type;
let pendingPreview = null;  // one preview due at a time, however often the page is drawn again

export default async function rulesPage(ctx) {
  const rules = (await ctx.call("GET", `/api/points/rules?institution_id=${ctx.inst()}`)).items;
  const history = el("div");
  history.id = "versions";
  const versions = (r) => action("历史版本", async () => {
    const scope = r.institution_id ? `?institution_id=${r.institution_id}` : "";  // none: the province default
    const all = (await ctx.call("GET", `/api/points/rules/${r.action_type}/versions${scope}`)).items;
    history.replaceChildren(card(`${typeName(r.action_type)}：全部版本`, table([
      ["version", "版本"], [(v) => local(v.effective_from), "生效"], [(v) => local(v.effective_to), "失效"], ["g_per_point", "克/分"],
      ["daily_cap_points", "每日上限"], [(v) => short(v.source), "来源"]], all)));
  }, "secondary");
  const list = table([
    [(r) => typeName(r.action_type), "行为"], ["version", "版本"],
    [(r) => (r.institution_id ? "本单位" : "全省默认"), "范围"],
    [(r) => Object.entries(r.variants).map(([k, v]) => `${k}: ${v.carbon_g_per_unit} 克/${UNITS[r.unit] || r.unit}`).join("；"), "减碳因子"],
    ["g_per_point", "克/分"], ["daily_cap_points", "每日上限"], [(r) => local(r.effective_from), "生效"],
    [(r) => short(r.source), "来源"], [versions, ""],
  ], rules);
  const byType = Object.fromEntries(rules.map((r) => [r.action_type, r]));
  const first = rules[0];
  const preview = el("div", "receipt", "修改上方参数即可预览示例行为的积分回执");
  preview.id = "preview";
  const { form: f, inputs } = form([
    { name: "action_type", label: "行为", options: rules.map((r) => [r.action_type, typeName(r.action_type)]) },
    { name: "variant", label: "方式（变体）", value: first ? Object.keys(first.variants)[0] : "default" },
    { name: "factor", label: "减碳因子（克/单位）", type: "number", api: ["variants"], value: first ? Object.values(first.variants)[0].carbon_g_per_unit : 100 },
    { name: "g_per_point", label: "每分克数", type: "number", value: first ? first.g_per_point : 50 },
    { name: "daily_cap_points", label: "每日积分上限（空为不限）", type: "number", value: first && first.daily_cap_points !== null ? first.daily_cap_points : "" },
    { name: "quantity", label: "示例数量", type: "number", step: "0.1", value: 10 },
    { name: "source", label: "因子来源", wide: true, value: first ? first.source : "" },
  ], "发布新版本", async (inputs) => {
    const created = await ctx.call("POST", "/api/points/rules", ruleFrom(inputs));
    toast(`已发布 ${typeName(created.action_type)} 第 ${created.version} 版`, true);
    await rulesPage(ctx);
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
  const refresh = () => {
    // A preview 250 ms after typing stops, on this route's clock: none once the admin has left the page.
    clearTimeout(pendingPreview);
    pendingPreview = ctx.later(async () => {
      try {
        const rule = ruleFrom(inputs);
        const r = await ctx.call("POST", "/api/points/rules/preview",
          { rule, action: { variant: inputs.variant.value, quantity: String(inputs.quantity.value || 0) } });
        preview.textContent = `${r.quantity} × ${r.factor_g_per_unit} 克 = ${r.carbon_g} 克 CO₂e → ${r.points} 分`
          + (r.capped ? `（按每日上限，原应 ${r.uncapped_points} 分）` : "");
      } catch (error) {
        if (!ctx.signal.aborted) preview.textContent = "无法预览：" + errorText(error, RULE_FIELDS);
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
  ctx.show(card("现行规则", list), history,
           card("新建规则版本（立即生效，不改写历史）", f, el("h2", null, "回执预览"), preview));
  refresh();
}
