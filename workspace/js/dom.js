// Small DOM helpers. Text always goes in as textContent (never innerHTML), so API data cannot inject markup.

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      node.className = value;
    } else if (key === "text") {
      node.textContent = value;
    } else if (key === "value" || key === "checked" || key === "selected" || key === "disabled") {
      node[key] = value;
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

// Times: shown in the browser's time zone, with the UTC value on hover (title) and for machines (datetime).
const LOCAL = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export function localTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : LOCAL.format(date);
}

export function time(iso) {
  if (!iso) return h("span", { class: "muted", text: "—" });
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return document.createTextNode(String(iso));
  const utc = date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  return h("time", { datetime: date.toISOString(), title: utc }, LOCAL.format(date));
}

export function age(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${m % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

export function yesNo(value) {
  if (value === null || value === undefined) return h("span", { class: "muted", text: "—" });
  return value ? "Yes" : "No";
}

export function num(value) {
  return value === null || value === undefined ? "—" : Number(value).toLocaleString();
}

const STATUS_TONE = {
  Processed: "ok", Acked: "ok", Ended: "ok",
  ProcessedWithErrors: "warn", Dequeued: "info", Enqueued: "info", Waiting: "info",
  Preprocessing: "busy", Processing: "busy", Executing: "busy",
  PreProcessingError: "bad", PostProcessingFailed: "bad", Error: "bad", Canceled: "warn",
};

export function statusBadge(status) {
  if (!status) return h("span", { class: "muted", text: "—" });
  return h("span", { class: `badge badge-${STATUS_TONE[status] || "info"}`, text: status });
}

// A table with a caption (for screen readers) and header cells with scope.
export function table({ caption, columns, rows, className = "data" }) {
  return h("div", { class: "table-scroll" }, h(
    "table",
    { class: className },
    caption ? h("caption", { text: caption }) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", text: c })))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c))))),
  ));
}

export function field(label, control, { hint, id, error } = {}) {
  const controlId = id || control.id || `f-${Math.random().toString(36).slice(2)}`;
  control.id = controlId;
  const hintId = hint ? `${controlId}-hint` : null;
  const errorNode = h("p", { class: "field-error", id: `${controlId}-error`, hidden: !error, text: error || "" });
  const describedBy = [hintId, `${controlId}-error`].filter(Boolean).join(" ");
  control.setAttribute("aria-describedby", describedBy);
  const isCheck = control.type === "checkbox";
  return h(
    "div",
    { class: isCheck ? "field field-check" : "field" },
    isCheck ? control : null,
    h("label", { for: controlId, text: label }),
    isCheck ? null : control,
    hint ? h("p", { class: "hint", id: hintId, text: hint }) : null,
    errorNode,
  );
}

export function announce(text) {
  const node = document.getElementById("announcer");
  if (node) {
    node.textContent = "";
    // A fresh text node after a tick, so screen readers announce the same text twice in a row too.
    setTimeout(() => { node.textContent = text; }, 50);
  }
}

export function errorBox(error, { retry } = {}) {
  const message = error && error.code
    ? `${error.message} (${error.code}${error.status ? `, HTTP ${error.status}` : ""})`
    : String((error && error.message) || error);
  return h(
    "div",
    { class: "error-box", role: "alert" },
    h("p", {}, h("strong", { text: "Something went wrong: " }), message),
    retry ? h("button", { type: "button", class: "secondary", onclick: retry, text: "Try again" }) : null,
  );
}

export function emptyState(title, ...body) {
  return h("div", { class: "empty" }, h("p", { class: "empty-title", text: title }), ...body);
}

export function link(href, text, attrs = {}) {
  return h("a", { href, "data-link": "", ...attrs }, text);
}

// A classic script of this origin (the CSP allows 'self'), loaded once.
const loaded = new Map();
export function loadScript(src) {
  if (!loaded.has(src)) {
    loaded.set(src, new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = src;
      script.onload = resolve;
      script.onerror = () => {
        loaded.delete(src);
        reject(new Error(`could not load ${src}`));
      };
      document.head.append(script);
    }));
  }
  return loaded.get(src);
}
