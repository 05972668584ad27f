// Process status: the job's runs ("batch jobs"), newest first, with "Get batch status" to read them again.
import { continuationOf, enc, getJson, q } from "../api.js";
import { age, announce, clear, emptyState, errorBox, h, num, statusBadge, time, yesNo } from "../dom.js";
import { jobHeader, loadJob } from "./jobnav.js";

const PAGE_SIZE = 25;
const TRIGGERS = { recurrence: "Recurrence", monitoring: "Monitoring", "on-arrival": "On arrival", manual: "Run now", "package-api": "Package API", retry: "Retry" };

export async function runsPage(ctx) {
  const { main } = ctx;
  const activityId = ctx.params[0];
  const { job, operation } = await loadJob(activityId);
  if (!ctx.isCurrent()) return;
  const title = `${job.name}: process status`;
  ctx.setTitle(title);

  const tbody = h("tbody");
  const problem = h("div");
  const more = h("button", { type: "button", class: "secondary", id: "more-runs", text: "Show older runs", hidden: true });
  const refresh = h("button", { type: "button", id: "refresh-runs", text: "Get batch status" });
  const checked = h("p", { class: "muted", role: "status", id: "runs-checked" });
  const box = h("div", { class: "table-scroll" });
  let nextToken = null;
  let shown = 0;

  function row(r) {
    const duration = r.startedAt && r.endedAt ? age((new Date(r.endedAt) - new Date(r.startedAt)) / 1000) : "—";
    return h("tr", { "data-execution-id": r.executionId },
      h("td", {}, h("code", { text: r.executionId })),
      h("td", { text: TRIGGERS[r.trigger] || r.trigger || "—" }),
      h("td", {}, statusBadge(r.status)),
      h("td", {}, time(r.startedAt || r.createdAt)),
      h("td", {}, time(r.endedAt)),
      h("td", { class: "num", text: duration }),
      h("td", { class: "num", text: num((r.messages || []).length) }),
      h("td", { class: "num", text: operation === "export" ? num(r.totalRecords) : "—" }),
      h("td", {}, operation === "export" ? yesNo(r.fileUploaded) : "—"),
      h("td", { text: (r.errors || []).join("; ") || "—" }));
  }

  async function load(reset) {
    let page;
    try {
      page = await getJson(`/api/manage/jobs/${enc(activityId)}/runs${q({ top: PAGE_SIZE, continuation: reset ? null : nextToken })}`);
    } catch (error) {
      clear(problem, errorBox(error, { retry: () => load(reset) }));
      return;
    }
    if (!ctx.isCurrent()) return;
    clear(problem);
    if (reset) {
      tbody.replaceChildren();
      shown = 0;
    }
    for (const r of page.value) tbody.append(row(r));
    shown += page.value.length;
    nextToken = continuationOf(page.nextLink);
    more.hidden = !nextToken;
    checked.textContent = `${shown} run(s), batch status read at ${new Date().toLocaleTimeString()}.`;
    if (!shown) {
      clear(box, emptyState("No runs yet.", h("p", { text: operation === "export"
        ? "A run starts on the job's recurrence, or with Export now on the Settings page."
        : "A run starts when waiting messages are processed: on the recurrence, on arrival, or with Process now." })));
    } else if (!box.querySelector("table")) {
      clear(box, h("table", { class: "data", id: "runs-table" },
        h("caption", { class: "visually-hidden", text: `Runs of ${job.name}` }),
        h("thead", {}, h("tr", {}, ["Execution ID", "Trigger", "Batch status", "Started", "Ended", "Duration", "Messages handled",
          "Total records exported", "File uploaded", "Errors"].map((c) => h("th", { scope: "col", text: c })))),
        tbody));
    }
  }

  refresh.addEventListener("click", async () => {
    await load(true);
    announce("Batch status refreshed.");
  });
  more.addEventListener("click", () => load(false));
  clear(main, ...jobHeader(job, operation, "runs", title), h("div", { class: "toolbar" }, refresh, checked), problem, box, more);
  await load(true);
  ctx.ready(title);
}
