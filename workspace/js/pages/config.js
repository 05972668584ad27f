// Configuration: entities (fields), source data formats, XSLT transforms (view and upload) and data projects
// (entities, sequence, field mapping, export filter). Documents are edited as JSON (the management API's own
// shapes, docs/openapi.yaml); the API checks them on save (the export filter against the entities too) and
// its message is shown next to the editor.
import { ApiError, enc, getJson, request, sendJson } from "../api.js";
import { announce, clear, emptyState, errorBox, field, h, link, num, table, yesNo } from "../dom.js";

const KINDS = {
  entities: { label: "Entities", one: "entity", help: "The data entities that imports write to and exports read: fields, types and keys." },
  formats: { label: "Source data formats", one: "format", help: "How files are read and written: CSV delimiter, encoding, header row, dates, decimals and yes/no words." },
  transforms: { label: "XSLT transforms", one: "transform", help: "XSLT 1.0 documents applied to inbound XML before it is read." },
  projects: { label: "Data projects", one: "data project", help: "Which entities a job imports or exports, in which sequence, with which format, mapping and transforms." },
};

const TEMPLATES = {
  entities: { label: "My entity", companySpecific: true, keys: ["ID"], fields: [{ name: "ID", type: "string", required: true, maxLength: 20 }, { name: "NAME", type: "string" }] },
  formats: { kind: "csv", delimiter: ",", textQualifier: "\"", encoding: "utf-8", headerRow: true },
  projects: { operation: "import", description: "", filter: null, entities: [{ entity: "CustomerGroups", format: "CSV", sequence: 1, mapping: [], transforms: [] }] },
};

function tabs(active) {
  return h("nav", { class: "tabs", "aria-label": "Configuration" },
    h("ul", {}, Object.entries(KINDS).map(([kind, k]) =>
      h("li", {}, h("a", { href: `/workspace/config/${kind}`, "data-link": "", "aria-current": kind === active ? "page" : null, text: k.label })))));
}

export async function configListPage(ctx) {
  const kind = (ctx.params && ctx.params[0]) || "entities";
  const info = KINDS[kind];
  const title = `Configuration: ${info.label.toLowerCase()}`;
  ctx.setTitle(title);
  const list = (await getJson(`/api/manage/${kind}`)).value;
  if (!ctx.isCurrent()) return;
  list.sort((a, b) => String(a.name).localeCompare(String(b.name)));
  const newLink = kind === "transforms" ? null : h("a", { class: "button", href: `/workspace/config/${kind}/new`, "data-link": "", text: `New ${info.one}` });
  const body = list.length ? listTable(kind, list) : emptyState(`No ${info.label.toLowerCase()} yet.`, h("p", { text: kind === "transforms" ? "Upload one below." : `Create one with “New ${info.one}”.` }));
  clear(ctx.main,
    h("div", { class: "page-head" }, h("h1", { text: "Configuration" }), newLink),
    tabs(kind),
    h("h2", { text: info.label }),
    h("p", { class: "muted", text: info.help }),
    h("div", { class: "table-scroll" }, body),
    kind === "transforms" ? transformUpload(ctx, null) : null);
  ctx.ready(title);
}

function listTable(kind, list) {
  // A project is keyed by name and operation (an import and an export project may share a name).
  const nameCell = (item) => link(`/workspace/config/${kind}/${enc(item.name)}${kind === "projects" ? `?operation=${item.operation}` : ""}`, item.name);
  const specs = {
    entities: [["Name", "Label", "Fields", "Keys", "Company-specific"], (e) => [nameCell(e), e.label || "—", num(e.fields.length), e.keys.join(", "), yesNo(e.companySpecific)]],
    formats: [["Name", "Kind", "Delimiter", "Encoding", "Header row"], (f) => [nameCell(f), f.kind, f.delimiter === "\t" ? "tab" : f.delimiter || "—", f.encoding || "—", yesNo(f.headerRow)]],
    transforms: [["Name", "Size (bytes)", "SHA-256"], (t) => [nameCell(t), num(t.size), h("code", { text: String(t.sha256 || "").slice(0, 16) })]],
    projects: [["Name", "Operation", "Entities", "Filter"], (p) => [nameCell(p), p.operation, p.entities.map((e) => e.entity).join(", "), p.filter ? h("code", { text: p.filter }) : "—"]],
  };
  const [columns, cells] = specs[kind];
  return table({ caption: KINDS[kind].label, columns, rows: list.map(cells) });
}

export async function configItemPage(ctx) {
  const [kind, rawName] = ctx.params;
  const name = decodeURIComponent(rawName);
  const info = KINDS[kind];
  const isNew = name === "new";
  if (kind === "transforms") return transformPage(ctx, name);
  const operation = kind === "projects" ? new URLSearchParams(window.location.search).get("operation") : null;
  const selector = operation ? `?operation=${enc(operation)}` : "";
  const doc = isNew ? TEMPLATES[kind] : await getJson(`/api/manage/${kind}/${enc(name)}${selector}`);
  if (!ctx.isCurrent()) return;
  const title = isNew ? `New ${info.one}` : `${info.label.replace(/s$/, "")}: ${name}`;
  ctx.setTitle(title);
  const editable = { ...doc };
  delete editable.name;

  const nameInput = isNew ? h("input", { id: "doc-name", required: true, autocomplete: "off", spellcheck: "false" }) : null;
  const editor = h("textarea", { id: "doc-json", class: "code", rows: 18, spellcheck: "false" }, JSON.stringify(editable, null, 2));
  const summary = h("div");
  const status = h("p", { class: "status-line", role: "status" });
  const form = h("form", { class: "form", novalidate: true },
    nameInput ? field("Name", nameInput, { hint: "Letters, digits, _ or -; starting with a letter." }) : null,
    field("Definition (JSON)", editor, { hint: kind === "projects" ? "The export filter is checked against the entities when you save." : "The management API's document; checked when you save." }),
    h("div", { class: "actions" }, h("button", { type: "submit", text: isNew ? "Create" : "Save" })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(summary);
    status.textContent = "";
    const errorNode = document.getElementById("doc-json-error");
    errorNode.hidden = true;
    editor.removeAttribute("aria-invalid");
    const target = isNew ? nameInput.value.trim() : name;
    if (isNew && !target) return showError(nameInput, "Give it a name.");
    let body;
    try {
      body = JSON.parse(editor.value);
    } catch (error) {
      return showError(editor, `This is not valid JSON: ${error.message}`);
    }
    try {
      await sendJson("PUT", `/api/manage/${kind}/${enc(target)}${isNew ? "" : selector}`, body);
      if (isNew) ctx.navigate(`/workspace/config/${kind}/${enc(target)}`);
      else {
        status.textContent = "Saved.";
        announce("Saved.");
      }
    } catch (error) {
      if (error instanceof ApiError && error.status === 400) showError(editor, error.message);
      else clear(summary, errorBox(error));
    }
  });

  clear(ctx.main,
    h("p", { class: "breadcrumb" }, h("a", { href: `/workspace/config/${kind}`, "data-link": "", text: `Configuration: ${info.label.toLowerCase()}` }), ` / ${isNew ? "new" : name}`),
    h("h1", { text: title }),
    isNew ? null : view(kind, doc),
    h("h2", { text: isNew ? "Definition" : "Edit" }),
    summary, status, form);
  ctx.ready(title);
}

function showError(control, message) {
  const node = document.getElementById(`${control.id}-error`);
  node.textContent = message;
  node.hidden = false;
  control.setAttribute("aria-invalid", "true");
  control.focus();
}

function view(kind, doc) {
  if (kind === "entities") {
    return h("section", { "aria-labelledby": "fields-h" },
      h("p", {}, `${doc.label || doc.name}. Keys: ${doc.keys.join(", ")}. Company-specific: ${doc.companySpecific ? "yes" : "no"}.`),
      h("h2", { id: "fields-h", text: "Fields" }),
      table({
        caption: `Fields of ${doc.name}`,
        columns: ["Field", "Type", "Required", "Max length", "Values"],
        rows: doc.fields.map((f) => [h("code", { text: f.name }), f.type, yesNo(f.required), f.maxLength ? num(f.maxLength) : "—", (f.values || []).join(", ") || "—"]),
      }));
  }
  if (kind === "formats") {
    return h("dl", { class: "facts" }, Object.entries(doc).filter(([k]) => k !== "name").map(([k, v]) =>
      [h("dt", { text: k }), h("dd", { text: v === null || v === undefined ? "—" : v === "\t" ? "tab" : String(v) })]));
  }
  // projects
  return h("section", { "aria-labelledby": "ents-h" },
    h("p", {}, `${doc.operation === "export" ? "Export" : "Import"} project. ${doc.description || ""}`),
    doc.operation === "export" ? h("p", {}, "Export filter: ", doc.filter ? h("code", { text: doc.filter }) : "none (every record)") : null,
    h("h2", { id: "ents-h", text: "Entities" }),
    table({
      caption: `Entities of ${doc.name}, in sequence`,
      columns: ["Sequence", "Entity", "Format", "Transforms", "Field mapping"],
      rows: [...doc.entities].sort((a, b) => a.sequence - b.sequence).map((e) => [
        num(e.sequence), link(`/workspace/config/entities/${enc(e.entity)}`, e.entity), e.format,
        (e.transforms || []).join(" → ") || "—",
        e.mapping && e.mapping.length
          ? h("ul", { class: "plain" }, e.mapping.map((m) => h("li", {}, `${m.source || "(default)"} → ${m.target}${m.default !== null && m.default !== undefined ? ` (default ${m.default})` : ""}${m.conversions && m.conversions.length ? ` (${m.conversions.length} value conversion${m.conversions.length === 1 ? "" : "s"})` : ""}`)))
          : "automatic, by name",
      ]),
    }));
}

// Transforms: the XSLT text, and upload (a file, or the edited text).
async function transformPage(ctx, name) {
  const isNew = name === "new";
  let text = "";
  if (!isNew) text = await (await request("GET", `/api/manage/transforms/${enc(name)}`)).text();
  if (!ctx.isCurrent()) return;
  const title = isNew ? "New XSLT transform" : `XSLT transform: ${name}`;
  ctx.setTitle(title);
  clear(ctx.main,
    h("p", { class: "breadcrumb" }, h("a", { href: "/workspace/config/transforms", "data-link": "", text: "Configuration: XSLT transforms" }), ` / ${name}`),
    h("h1", { text: title }),
    isNew ? null : h("section", { "aria-labelledby": "xslt-h" }, h("h2", { id: "xslt-h", text: "Document" }),
      h("pre", { class: "code-view", tabindex: "0", "aria-label": `XSLT of ${name}` }, text)),
    transformUpload(ctx, isNew ? null : name));
  ctx.ready(title);
}

function transformUpload(ctx, name) {
  const nameInput = name ? null : h("input", { id: "xslt-name", required: true, autocomplete: "off", spellcheck: "false" });
  const file = h("input", { id: "xslt-file", type: "file", accept: ".xsl,.xslt,.xml,application/xml,text/xml" });
  const status = h("p", { class: "status-line", role: "status" });
  const form = h("form", { class: "form", novalidate: true },
    nameInput ? field("Name", nameInput) : null,
    field("XSLT file", file, { hint: "XSLT 1.0, at most 2 MiB; compiled and checked when uploaded." }),
    h("div", { class: "actions" }, h("button", { type: "submit", text: name ? "Upload a new version" : "Upload" })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const errorNode = document.getElementById("xslt-file-error");
    errorNode.hidden = true;
    status.textContent = "";
    const target = name || nameInput.value.trim();
    const fail = (control, message) => {
      const node = document.getElementById(`${control.id}-error`);
      node.textContent = message;
      node.hidden = false;
      control.setAttribute("aria-invalid", "true");
      control.focus();
    };
    if (!target) return fail(nameInput, "Give the transform a name.");
    if (!file.files.length) return fail(file, "Choose an XSLT file.");
    try {
      await request("PUT", `/api/manage/transforms/${enc(target)}`, { body: await file.files[0].arrayBuffer(), contentType: "application/xslt+xml" });
      ctx.navigate(`/workspace/config/transforms/${enc(target)}`);
    } catch (error) {
      fail(file, error.message);
    }
  });
  return h("section", { "aria-labelledby": "upload-h" }, h("h2", { id: "upload-h", text: name ? "Upload a new version" : "Upload a transform" }), status, form);
}
