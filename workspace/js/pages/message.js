// A message: its status timeline, records per entity, errors, and its error file.
import { enc, getJson, request } from "../api.js";
import { clear, h, num, statusBadge, table, time, yesNo } from "../dom.js";

export async function messagePage(ctx) {
  const { main } = ctx;
  const messageId = ctx.params[0];
  const m = await getJson(`/api/manage/messages/${enc(messageId)}`);
  let job = null;
  try {
    job = await getJson(`/api/manage/jobs/${enc(m.jobId)}`);
  } catch {
    // A message outlives a deleted job.
  }
  if (!ctx.isCurrent()) return;
  const title = `Message ${m.externalIdentifier || m.messageId}`;
  ctx.setTitle(title);
  const back = job ? `/workspace/jobs/${job.activityId}/messages` : "/workspace/jobs";

  const facts = [
    ["Message ID", h("code", { text: m.messageId })],
    ["Status", statusBadge(m.status)],
    ["Direction", m.direction === "export" ? "Export" : "Import"],
    ["External ID", m.externalIdentifier || "—"],
    ["Entity", m.entity || "—"],
    ["Company", m.company || "—"],
    ["Enqueued", time(m.enqueuedAt)],
    ["Last change", time(m.updatedAt)],
    ["Execution ID", m.executionId ? h("code", { text: m.executionId }) : "—"],
    ["Delivery attempts", num(m.attempts)],
  ];
  if (m.direction === "export") {
    facts.push(["Total records exported", num(m.totalRecords)], ["File uploaded", yesNo(m.fileUploaded)],
      ["Dequeued", time(m.dequeuedAt)], ["Acked", time(m.ackedAt)]);
  } else {
    facts.push(["Processed", time(m.processedAt)]);
  }

  const counts = Object.entries(m.counts || {});
  const downloadStatus = h("p", { role: "status", class: "status-line" });
  const download = m.errorFile
    ? h("button", {
      type: "button",
      id: "download-errors",
      async onclick() {
        downloadStatus.textContent = "Downloading…";
        try {
          const blob = await (await request("GET", `/api/manage/messages/${enc(m.messageId)}/errors`)).blob();
          const url = URL.createObjectURL(blob);
          const a = h("a", { href: url, download: `${m.messageId}-errors.csv`, hidden: true });
          document.body.append(a);
          a.click();
          a.remove();
          setTimeout(() => URL.revokeObjectURL(url), 10000);
          downloadStatus.textContent = "The error file was downloaded.";
        } catch (error) {
          downloadStatus.textContent = `The error file could not be downloaded: ${error.message}`;
        }
      },
      text: "Download the error file",
    })
    : null;

  clear(main,
    h("p", { class: "breadcrumb" }, h("a", { href: "/workspace/jobs", "data-link": "", text: "Recurring data jobs" }), " / ",
      job ? h("a", { href: back, "data-link": "", text: `${job.name}: messages` }) : "messages", " / message"),
    h("h1", { text: title }),
    h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)])),
    h("section", { "aria-labelledby": "timeline-h" },
      h("h2", { id: "timeline-h", text: "Status timeline" }),
      (m.transitions || []).length
        ? h("ol", { class: "timeline" }, m.transitions.map((t) => h("li", {}, statusBadge(t.status), " ", time(t.at))))
        : h("p", { class: "muted", text: "No status changes recorded." })),
    h("section", { "aria-labelledby": "counts-h" },
      h("h2", { id: "counts-h", text: "Records per entity" }),
      counts.length
        ? table({
          caption: "Records read, written and rejected per entity",
          columns: ["Entity", "Read", "Written", "Rejected", "Status", "Error"],
          rows: counts.map(([entity, c]) => [entity, num(c.read), num(c.written), num(c.rejected), c.status ? statusBadge(c.status) : "—", c.error || "—"]),
        })
        : h("p", { class: "muted", text: "Nothing counted yet." })),
    h("section", { "aria-labelledby": "errors-h" },
      h("h2", { id: "errors-h", text: "Errors" }),
      m.errorSummary ? h("p", { class: "error-text", text: m.errorSummary }) : h("p", { class: "muted", text: "No errors." }),
      m.errorCount ? h("p", { text: `${num(m.errorCount)} record(s) rejected.` }) : null,
      download, downloadStatus),
  );
  ctx.ready(title);
}
