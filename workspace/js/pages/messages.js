// Manage messages: the job's messages, a page at a time from the server (top + continuation), with a status
// filter (in the URL) and a refresh every few seconds so statuses are seen changing.
import { continuationOf, enc, getJson, q } from "../api.js";
import { clear, emptyState, errorBox, h, num, statusBadge, time, yesNo } from "../dom.js";
import { makeGrid } from "../grid.js";
import { jobHeader, loadJob } from "./jobnav.js";

const STATUSES = ["Enqueued", "Dequeued", "Acked", "Preprocessing", "Processing", "Processed",
  "ProcessedWithErrors", "PreProcessingError", "PostProcessingFailed"];
const PAGE_SIZE = 25;
const REFRESH_MS = 4000;

export async function messagesPage(ctx) {
  const { main, query } = ctx;
  const activityId = ctx.params[0];
  const { job, operation } = await loadJob(activityId);
  if (!ctx.isCurrent()) return;
  const title = `${job.name}: manage messages`;
  ctx.setTitle(title);
  const exportJob = operation === "export";

  const status = h("select", { id: "status-filter" },
    h("option", { value: "", text: "All statuses" }),
    STATUSES.map((s) => h("option", { value: s, selected: s === query.get("status"), text: s })));
  const auto = h("input", { type: "checkbox", id: "auto-refresh", checked: true });
  const refreshButton = h("button", { type: "button", class: "secondary", id: "refresh", text: "Refresh" });
  const prev = h("button", { type: "button", class: "secondary", id: "prev-page", text: "Previous page" });
  const next = h("button", { type: "button", class: "secondary", id: "next-page", text: "Next page" });
  const pageInfo = h("span", { class: "muted", id: "page-info", "aria-live": "polite" });
  const box = h("div", { class: "table-scroll" });
  const problem = h("div");
  let tokens = [null]; // the continuation of each page seen so far; the last is the current page's
  let nextToken = null;
  let grid = null;
  let timer = null;

  const columns = exportJob
    ? ["Message ID", "External ID", "Entity", "Company", "Status", "Enqueued", "Dequeued", "Acked", "Total records exported", "File uploaded"]
    : ["Message ID", "External ID", "Entity", "Company", "Status", "Enqueued", "Processed", "Read", "Written", "Rejected"];

  function cellsOf(m) {
    const id = h("a", { href: `/workspace/messages/${m.messageId}`, "data-link": "" }, h("code", { text: m.messageId }));
    const common = [id, m.externalIdentifier || "—", m.entity || "—", m.company || "—", statusBadge(m.status), time(m.enqueuedAt)];
    if (exportJob) return [...common, time(m.dequeuedAt), time(m.ackedAt), num(m.totalRecords), yesNo(m.fileUploaded)];
    const r = m.records || {};
    return [...common, time(m.processedAt), num(r.read), num(r.written), num(r.rejected)];
  }

  async function load({ keepFocus = false } = {}) {
    const hadFocus = grid && grid.hasFocus();
    const token = tokens[tokens.length - 1];
    let page;
    try {
      page = await getJson(`/api/manage/jobs/${enc(activityId)}/messages${q({ status: status.value, top: PAGE_SIZE, continuation: token })}`);
    } catch (error) {
      clear(problem, errorBox(error, { retry: () => load() }));
      return;
    }
    if (!ctx.isCurrent()) return;
    clear(problem);
    nextToken = continuationOf(page.nextLink);
    prev.disabled = tokens.length === 1;
    next.disabled = !nextToken;
    pageInfo.textContent = `Page ${tokens.length}: ${page.value.length} message(s)${nextToken ? ", more on the next page" : ""}`;
    if (!page.value.length) {
      grid = null;
      clear(box, emptyState(
        status.value ? `No ${status.value} messages.` : "No messages yet.",
        h("p", { text: exportJob
          ? "Export files appear here when the job runs (Export now on the Settings page)."
          : "Partners enqueue files with POST /api/connector/enqueue/<activity ID>; each one appears here." })));
      return;
    }
    const table = h("table", { class: "data grid", id: "messages-grid" },
      h("caption", { class: "visually-hidden", text: `Messages of ${job.name}, page ${tokens.length}` }),
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", text: c })))),
      h("tbody", {}, page.value.map((m) => h("tr", { "data-message-id": m.messageId, "data-status": m.status },
        cellsOf(m).map((c) => h("td", {}, c))))));
    const previous = grid;
    clear(box, table);
    grid = makeGrid(table, { label: `Messages of ${job.name}` });
    if (previous && keepFocus && hadFocus) grid.focusActive();
  }

  function schedule() {
    clearInterval(timer);
    if (auto.checked) timer = setInterval(() => load({ keepFocus: true }), REFRESH_MS);
  }
  ctx.onLeave(() => clearInterval(timer));
  auto.addEventListener("change", schedule);
  refreshButton.addEventListener("click", () => load({ keepFocus: true }));
  status.addEventListener("change", () => {
    tokens = [null];
    const url = `/workspace/jobs/${job.activityId}/messages${q({ status: status.value })}`;
    window.history.replaceState(null, "", url);
    load();
  });
  next.addEventListener("click", () => { if (nextToken) { tokens.push(nextToken); load(); } });
  prev.addEventListener("click", () => { if (tokens.length > 1) { tokens.pop(); load(); } });

  clear(main, ...jobHeader(job, operation, "messages", title),
    h("div", { class: "toolbar" },
      h("div", { class: "field" }, h("label", { for: "status-filter", text: "Status" }), status),
      h("div", { class: "field field-check" }, auto, h("label", { for: "auto-refresh", text: "Refresh every few seconds" })),
      refreshButton),
    problem, box,
    h("div", { class: "pager" }, prev, pageInfo, next),
    h("p", { class: "hint", text: "In the grid: arrow keys move between cells, Enter opens a message." }));
  await load();
  schedule();
  ctx.ready(title);
}
