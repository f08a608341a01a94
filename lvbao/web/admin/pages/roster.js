// The roster: a CSV import that names each bad row (all rows or none), and the first hundred people.
import { Dropped } from "/web/http.js";
import { card, el, fieldErrors, fieldLabelled, table, toast } from "/web/widgets.js";
import { action } from "/web/admin/ui.js";

const ROSTER_FIELDS = { employee_no: "工号", name: "姓名", phone: "手机号", department_code: "部门编码",
                        nickname: "昵称", header: "表头", _row: "整行", _file: "文件" };

export default async function rosterPage(ctx) {
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
      const done = await ctx.call("POST", `/api/auth/institutions/${ctx.inst()}/roster`, body, { raw: true, contentType: "text/csv" });
      result.replaceChildren(el("p", null, `已导入 ${done.imported} 人（新增 ${done.created}，更新 ${done.updated}）`));
      toast("名册已导入", true);
    } catch (error) {
      if (error instanceof Dropped) throw error;
      const list = el("ul", "errors");
      for (const row of Array.isArray(error.errors) ? error.errors : []) {
        const what = fieldErrors(row.errors).map(([path, text]) => fieldLabelled(path, text, ROSTER_FIELDS)).join("；");
        list.append(el("li", null, `第 ${row.row} 行 — ${what}`));
      }
      result.replaceChildren(el("p", "errors", error.message), list);
    }
  });
  const roster = (await ctx.call("GET", `/api/auth/institutions/${ctx.inst()}/roster?limit=100`)).items;
  ctx.show(card("导入名册", el("p", "muted", "CSV 表头：employee_no,name,phone,department_code[,nickname]；有一行出错则整份不导入。"),
    file, picker, upload, result),
    card(`名册（前 ${roster.length} 人）`, table([["employee_no", "工号"], ["name", "姓名"], ["nickname", "昵称"],
      [(r) => (r.user_id ? "已绑定" : "未绑定"), "绑定"]], roster)));
}
