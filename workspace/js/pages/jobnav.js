// The heading and tabs shared by a job's pages (Settings, Messages, Runs, Monitoring), and the job loader.
import { enc, getJson } from "../api.js";
import { h } from "../dom.js";

export async function loadJob(activityId) {
  const job = await getJson(`/api/manage/jobs/${enc(activityId)}`);
  let operation = "unknown";
  try {
    operation = (await getJson(`/api/manage/projects/${enc(job.project)}`)).operation;
  } catch {
    // The project may have been deleted; the pages still work.
  }
  return { job, operation };
}

const TABS = [
  ["settings", "Settings", ""],
  ["messages", "Manage messages", "/messages"],
  ["runs", "Process status", "/runs"],
  ["monitoring", "Monitoring", "/monitoring"],
];

export function jobHeader(job, operation, active, title) {
  const base = `/workspace/jobs/${job.activityId}`;
  return [
    h("p", { class: "breadcrumb" }, h("a", { href: "/workspace/jobs", "data-link": "", text: "Recurring data jobs" }), " / ", job.name),
    h("h1", { text: title }),
    h("p", { class: "muted" }, `${operation === "export" ? "Export" : "Import"} job · project ${job.project} · activity ID `,
      h("code", { text: job.activityId })),
    h("nav", { class: "tabs", "aria-label": "Job pages" },
      h("ul", {}, TABS.map(([key, label, suffix]) =>
        h("li", {}, h("a", { href: base + suffix, "data-link": "", "aria-current": key === active ? "page" : null, text: label }))))),
  ];
}
