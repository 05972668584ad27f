// Job: its settings, editable, with the API's validation errors shown next to the field they name; and
// "Process now" (import) or "Export now" (export).
import { ApiError, enc, getJson, request, sendJson } from "../api.js";
import { announce, clear, errorBox, field, h } from "../dom.js";
import { recurrenceText } from "../words.js";
import { jobHeader, loadJob } from "./jobnav.js";

const UNITS = [["minutes", "Minutes"], ["hours", "Hours"], ["days", "Days"], ["weeks", "Weeks"], ["months", "Months"]];

export async function jobPage(ctx) {
  const { main } = ctx;
  const activityId = ctx.params && ctx.params[0];
  const [loaded, projects] = await Promise.all([
    activityId ? loadJob(activityId) : Promise.resolve(null),
    getJson("/api/manage/projects"),
  ]);
  if (!ctx.isCurrent()) return;
  const job = loaded ? loaded.job : null;
  const title = job ? `${job.name}: settings` : "New recurring data job";
  ctx.setTitle(title);

  if (!job && !projects.value.length) {
    clear(main, h("h1", { text: title }), h("div", { class: "empty" },
      h("p", { class: "empty-title", text: "A job needs a data project, and there is none yet." }),
      h("p", {}, h("a", { href: "/workspace/config/projects/new", "data-link": "", text: "Create a data project" }), " first.")));
    ctx.ready(title);
    return;
  }

  const form = buildForm(job, projects.value);
  const summary = h("div", { id: "form-summary" });
  const status = h("p", { class: "status-line", role: "status", id: "job-status" });
  const flash = ctx.query.get("created") ? "The job was created." : "";

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form, summary);
    let body;
    try {
      body = readForm(form);
    } catch (error) {
      showErrors(form, summary, error.message);
      return;
    }
    const save = form.querySelector("button[type=submit]");
    save.disabled = true;
    try {
      if (job) {
        await sendJson("PUT", `/api/manage/jobs/${enc(job.activityId)}`, { ...body, activityId: job.activityId });
        status.textContent = "Saved.";
        announce("The job was saved.");
      } else {
        const created = await sendJson("POST", "/api/manage/jobs", body);
        ctx.navigate(`/workspace/jobs/${created.activityId}?created=1`);
      }
    } catch (error) {
      if (error instanceof ApiError && error.status === 400) showErrors(form, summary, error.message);
      else clear(summary, errorBox(error));
    } finally {
      save.disabled = false;
    }
  });

  const parts = job
    ? jobHeader(job, loaded.operation, "settings", title)
    : [h("p", { class: "breadcrumb" }, h("a", { href: "/workspace/jobs", "data-link": "", text: "Recurring data jobs" }), " / New job"), h("h1", { text: title })];
  const actions = job ? runNowBox(job, loaded.operation, status) : null;
  clear(main, ...parts, flash ? h("p", { class: "notice", role: "status", text: flash }) : null, actions, status, summary, form);
  ctx.ready(title);
}

function runNowBox(job, operation, status) {
  const label = operation === "export" ? "Export now" : "Process now";
  const button = h("button", {
    type: "button",
    id: "run-now",
    async onclick() {
      button.disabled = true;
      status.textContent = `${label}: sending…`;
      try {
        const response = await request("POST", `/api/manage/jobs/${enc(job.activityId)}/run`);
        const result = await response.json();
        status.textContent = operation === "export"
          ? "The export was started. Its run appears under Process status."
          : `${result.queued} waiting message(s) sent for processing. Watch them under Manage messages.`;
      } catch (error) {
        status.textContent = `${label} failed: ${error.message}`;
      } finally {
        button.disabled = false;
      }
    },
    text: label,
  });
  return h("div", { class: "actions" }, button,
    h("span", { class: "muted", text: ` Recurrence: ${recurrenceText(job.recurrence)}.` }));
}

// The form --------------------------------------------------------------------------------------------------

function input(name, attrs = {}) {
  return h("input", { name, "data-field": name, ...attrs });
}

function checkbox(name, checked) {
  return h("input", { type: "checkbox", name, "data-field": name, checked: Boolean(checked) });
}

function unitSelect(name, value) {
  return h("select", { name, "data-field": name }, UNITS.map(([v, label]) => h("option", { value: v, selected: v === value, text: label })));
}

function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function buildForm(job, projects) {
  const j = job || { enabled: true, mode: "file", redeliveryMinutes: 30, authorizationPolicy: [] };
  const rec = j.recurrence;
  const mon = j.monitoring;
  const projectSelect = h("select", { name: "project", "data-field": "project", required: true },
    job ? null : h("option", { value: "", text: "Choose a data project" }),
    projects.map((p) => h("option", { value: p.name, "data-operation": p.operation, selected: job && p.name.toLowerCase() === String(j.project).toLowerCase(), text: `${p.name} (${p.operation})` })));

  const recOn = checkbox("recurrence.on", Boolean(rec));
  const monOn = checkbox("monitoring.on", Boolean(mon));
  const policy = h("div", { class: "policy-rows" });
  const addPolicyRow = (entry = { applicationId: "", enabled: true }) => {
    const i = policy.children.length;
    const id = h("input", { name: "applicationId", "data-field": `authorizationPolicy[${i}].applicationId`, value: entry.applicationId, spellcheck: "false", size: 38 });
    const on = h("input", { type: "checkbox", name: "policyEnabled", checked: entry.enabled !== false });
    const row = h("div", { class: "policy-row" },
      field(`Application ${i + 1} ID`, id),
      field("Enabled", on),
      h("button", { type: "button", class: "secondary", onclick: () => { row.remove(); renumber(policy); }, text: `Remove application ${i + 1}` }));
    policy.append(row);
    return id;
  };
  for (const entry of j.authorizationPolicy || []) addPolicyRow(entry);

  return h("form", { class: "form", id: "job-form", novalidate: true },
    h("fieldset", {}, h("legend", { text: "General" }),
      field("Name", input("name", { value: j.name || "", required: true, class: "wide" })),
      field("Description", h("textarea", { name: "description", "data-field": "description", rows: 2, class: "wide" }, j.description || "")),
      field("Data project", projectSelect),
      field("Enabled", checkbox("enabled", j.enabled)),
      field("Mode", h("select", { name: "mode", "data-field": "mode" },
        h("option", { value: "file", selected: j.mode !== "package", text: "File" }),
        h("option", { value: "package", selected: j.mode === "package", text: "Data package" }))),
      field("Legal entity (company)", input("company", { value: j.company || "", size: 12 }), { hint: "Optional: the job then imports only into this legal entity." })),
    h("fieldset", { "data-field": "recurrence" }, h("legend", { text: "Processing recurrence" }),
      field("Run on a recurrence", recOn),
      h("div", { class: "row" },
        field("Unit", unitSelect("recurrence.unit", rec ? rec.unit : "minutes")),
        field("Every", input("recurrence.interval", { type: "number", min: 1, value: rec ? rec.interval : 5, size: 6 })),
        field("Start (your time)", input("recurrence.start", { type: "datetime-local", value: toLocalInput(rec && rec.start) })),
        field("End (your time)", input("recurrence.end", { type: "datetime-local", value: toLocalInput(rec && rec.end) })),
        field("Count", input("recurrence.count", { type: "number", min: 1, value: rec && rec.count ? rec.count : "", size: 8 }))),
      h("p", { class: "field-error", "data-error-for": "recurrence", hidden: true })),
    h("fieldset", { "data-field": "monitoring" }, h("legend", { text: "Monitoring recurrence (queue load)" }),
      field("Monitor the queue load", monOn),
      h("div", { class: "row" },
        field("Unit", unitSelect("monitoring.unit", mon ? mon.unit : "minutes")),
        field("Every", input("monitoring.interval", { type: "number", min: 1, value: mon ? mon.interval : 5, size: 6 })),
        field("Backlog threshold", input("monitoring.backlogThreshold", { type: "number", min: 1, value: mon ? mon.backlogThreshold : 100, size: 8 }),
          { hint: "Waiting messages that start processing early." })),
      h("p", { class: "field-error", "data-error-for": "monitoring", hidden: true })),
    h("fieldset", {}, h("legend", { text: "Processing" }),
      field("Process messages in order", checkbox("processInOrder", j.processInOrder)),
      field("Process messages as they arrive", checkbox("processOnArrival", j.processOnArrival)),
      field("Prevent upload when zero records", checkbox("preventUploadWhenZeroRecords", j.preventUploadWhenZeroRecords)),
      field("Export only changes since the last run (incremental)", checkbox("incremental", j.incremental)),
      field("Redelivery timeout (minutes)", input("redeliveryMinutes", { type: "number", min: 1, value: j.redeliveryMinutes ?? 30, size: 6 }),
        { hint: "How long a dequeued export file stays hidden before it is offered again." })),
    h("fieldset", { "data-field": "authorizationPolicy" }, h("legend", { text: "Authorized applications" }),
      h("p", { class: "hint", text: "The Entra ID applications (client IDs) that may use this job's connector endpoints." }),
      policy,
      h("button", { type: "button", class: "secondary", onclick: () => addPolicyRow().focus(), text: "Add application" }),
      h("p", { class: "field-error", "data-error-for": "authorizationPolicy", hidden: true })),
    h("div", { class: "actions" }, h("button", { type: "submit", text: job ? "Save" : "Create job" })),
  );
}

function renumber(policy) {
  [...policy.children].forEach((row, i) => {
    row.querySelector("input[name=applicationId]").dataset.field = `authorizationPolicy[${i}].applicationId`;
    const labels = row.querySelectorAll("label");
    labels[0].textContent = `Application ${i + 1} ID`;
    row.querySelector("button").textContent = `Remove application ${i + 1}`;
  });
}

function value(form, name) {
  return form.querySelector(`[data-field="${name}"]`);
}

function intOrNull(form, name) {
  const text = value(form, name).value.trim();
  if (!text) return null;
  const n = Number(text);
  if (!Number.isInteger(n)) throw new FieldError(`${name} must be a whole number`);
  return n;
}

class FieldError extends Error {}

function isoOrNull(form, name) {
  const text = value(form, name).value;
  if (!text) return null;
  const d = new Date(text);
  if (Number.isNaN(d.getTime())) throw new FieldError(`${name} is not a date and time`);
  return d.toISOString().replace(/\.\d+Z$/, "Z");
}

function readForm(form) {
  const body = {
    name: value(form, "name").value,
    description: value(form, "description").value,
    project: value(form, "project").value,
    enabled: value(form, "enabled").checked,
    mode: value(form, "mode").value,
    company: value(form, "company").value.trim() || null,
    processInOrder: value(form, "processInOrder").checked,
    processOnArrival: value(form, "processOnArrival").checked,
    preventUploadWhenZeroRecords: value(form, "preventUploadWhenZeroRecords").checked,
    incremental: value(form, "incremental").checked,
    redeliveryMinutes: intOrNull(form, "redeliveryMinutes"),
    recurrence: null,
    monitoring: null,
    authorizationPolicy: [...form.querySelectorAll(".policy-row")].map((row) => ({
      applicationId: row.querySelector("input[name=applicationId]").value.trim(),
      enabled: row.querySelector("input[name=policyEnabled]").checked,
    })),
  };
  if (body.redeliveryMinutes === null) delete body.redeliveryMinutes;
  // An export job always produces a data package; the server refuses mode "file" on one (OptionNotApplicable).
  const chosen = value(form, "project").selectedOptions[0];
  if (chosen && chosen.dataset.operation === "export") body.mode = "package";
  if (value(form, "recurrence.on").checked) {
    body.recurrence = {
      unit: value(form, "recurrence.unit").value,
      interval: intOrNull(form, "recurrence.interval"),
      start: isoOrNull(form, "recurrence.start"),
      end: isoOrNull(form, "recurrence.end"),
      count: intOrNull(form, "recurrence.count"),
    };
  }
  if (value(form, "monitoring.on").checked) {
    body.monitoring = {
      unit: value(form, "monitoring.unit").value,
      interval: intOrNull(form, "monitoring.interval"),
      backlogThreshold: intOrNull(form, "monitoring.backlogThreshold"),
    };
  }
  return body;
}

function clearErrors(form, summary) {
  clear(summary);
  for (const node of form.querySelectorAll(".field-error")) {
    node.textContent = "";
    node.hidden = true;
  }
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
}

// The API's messages start with the path of the field at fault ("redeliveryMinutes must be between…",
// "recurrence.interval must be…", "authorizationPolicy[0].applicationId: … is not a GUID"): the longest
// field path the message starts with gets the message.
export function fieldForMessage(form, message) {
  let best = null;
  for (const node of form.querySelectorAll("[data-field]")) {
    const path = node.dataset.field;
    if (message.startsWith(path) && /^($|[\s:.[])/.test(message.slice(path.length)) && (!best || path.length > best.dataset.field.length)) {
      best = node;
    }
  }
  return best;
}

function showErrors(form, summary, message) {
  const target = fieldForMessage(form, message);
  clear(summary, h("div", { class: "error-box", role: "alert" },
    h("p", {}, h("strong", { text: "Not saved. " }), message)));
  if (!target) return;
  let errorNode;
  if (target.tagName === "FIELDSET") {
    errorNode = target.querySelector(`[data-error-for="${target.dataset.field}"]`);
  } else {
    errorNode = document.getElementById(`${target.id}-error`);
    target.setAttribute("aria-invalid", "true");
  }
  if (errorNode) {
    errorNode.textContent = message;
    errorNode.hidden = false;
  }
  (target.tagName === "FIELDSET" ? target.querySelector("input, select") : target).focus();
}
