// Jobs: every recurring data job with its backlog and last run; filter and search (kept in the URL).
import { getJson } from "../api.js";
import { age, clear, emptyState, h, link, num, statusBadge, time } from "../dom.js";
import { recurrenceText } from "../words.js";

export async function jobsPage(ctx) {
  const { main, query } = ctx;
  ctx.setTitle("Recurring data jobs");
  const [jobs, projects, backlog] = await Promise.all([
    getJson("/api/manage/jobs"),
    getJson("/api/manage/projects"),
    getJson("/api/manage/backlog"),
  ]);
  if (!ctx.isCurrent()) return;
  const operationOf = new Map(projects.value.map((p) => [p.name.toLowerCase(), p.operation]));
  const backlogOf = new Map(backlog.value.map((b) => [b.activityId, b]));
  const rows = jobs.value.map((job) => ({
    job,
    operation: operationOf.get(String(job.project).toLowerCase()) || "unknown",
    backlog: backlogOf.get(job.activityId) || {},
  }));

  const heading = h("div", { class: "page-head" },
    h("h1", { text: "Recurring data jobs" }),
    h("a", { class: "button", href: "/workspace/jobs/new", "data-link": "", text: "New job" }));

  if (!rows.length) {
    clear(main, heading, emptyState(
      "No jobs yet: create one.",
      h("p", {}, "A recurring data job takes files from partners (import) or produces them (export) for a ",
        link("/workspace/config/projects", "data project"), ". ",
        projects.value.length
          ? link("/workspace/jobs/new", "Create the first job")
          : ["There is no data project yet either: ", link("/workspace/config/projects/new", "create a data project"), " first."]),
    ));
    ctx.ready("Recurring data jobs");
    return;
  }

  const search = h("input", { type: "search", id: "job-search", value: query.get("q") || "", placeholder: "Name, project or activity ID" });
  const operation = select("job-operation", [["", "All"], ["import", "Import"], ["export", "Export"]], query.get("operation"));
  const enabled = select("job-enabled", [["", "All"], ["yes", "Enabled"], ["no", "Disabled"]], query.get("enabled"));
  const count = h("p", { class: "muted", id: "job-count", role: "status" });
  const tableBox = h("div", { class: "table-scroll" });

  function apply() {
    const text = search.value.trim().toLowerCase();
    const params = new URLSearchParams();
    if (text) params.set("q", search.value.trim());
    if (operation.value) params.set("operation", operation.value);
    if (enabled.value) params.set("enabled", enabled.value);
    const qs = params.toString();
    window.history.replaceState(null, "", `/workspace/jobs${qs ? `?${qs}` : ""}`);
    const shown = rows.filter(({ job, operation: op }) =>
      (!text || [job.name, job.project, job.description, job.activityId].some((v) => String(v || "").toLowerCase().includes(text)))
      && (!operation.value || op === operation.value)
      && (!enabled.value || job.enabled === (enabled.value === "yes")));
    count.textContent = `${shown.length} of ${rows.length} jobs`;
    clear(tableBox, shown.length ? jobsTable(shown) : emptyState("No job matches the filter."));
  }
  search.addEventListener("input", apply);
  operation.addEventListener("change", apply);
  enabled.addEventListener("change", apply);

  clear(
    main,
    heading,
    h("form", { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
      h("div", { class: "field" }, h("label", { for: "job-search", text: "Search" }), search),
      h("div", { class: "field" }, h("label", { for: "job-operation", text: "Import or export" }), operation),
      h("div", { class: "field" }, h("label", { for: "job-enabled", text: "Enabled" }), enabled)),
    count,
    tableBox,
  );
  apply();
  ctx.ready("Recurring data jobs");
}

function select(id, options, value) {
  return h("select", { id }, options.map(([v, label]) => h("option", { value: v, selected: v === (value || ""), text: label })));
}

function jobsTable(rows) {
  const head = ["Job", "Project", "Import / export", "File or package", "Enabled", "Recurrence", "Waiting", "Oldest waiting", "Last run"];
  return h("table", { class: "data", id: "jobs-table" },
    h("caption", { class: "visually-hidden", text: "Recurring data jobs" }),
    h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col", text: c })))),
    h("tbody", {}, rows.map(({ job, operation, backlog }) => {
      const last = backlog.lastRun;
      return h("tr", { "data-activity-id": job.activityId },
        h("th", { scope: "row" }, link(`/workspace/jobs/${job.activityId}`, job.name),
          h("div", { class: "sub" }, link(`/workspace/jobs/${job.activityId}/messages`, "Messages"), " · ",
            link(`/workspace/jobs/${job.activityId}/runs`, "Runs"))),
        h("td", { text: job.project }),
        h("td", { text: operation === "export" ? "Export" : operation === "import" ? "Import" : "—" }),
        h("td", { text: job.mode === "package" ? "Package" : "File" }),
        h("td", {}, job.enabled ? "Yes" : h("span", { class: "badge badge-warn", text: "Disabled" })),
        h("td", { text: recurrenceText(job.recurrence) }),
        h("td", { class: "num" }, backlog.waiting === undefined ? "—" : `${num(backlog.waiting)}${backlog.waitingCapped ? "+" : ""}`),
        h("td", { class: "num", text: age(backlog.oldestAgeSeconds) }),
        h("td", {}, last ? [statusBadge(last.status), " ", time(last.endedAt || last.startedAt || last.createdAt)] : h("span", { class: "muted", text: "never run" })),
      );
    })),
  );
}
