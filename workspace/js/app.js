// The workspace: loads /workspace/config.json, signs in, and routes /workspace/... URLs to pages (history
// API, so every page has a URL of its own: deep links, reload and the back button work; the server answers
// index.html for any extension-less path under /workspace/).
import { hooks } from "./api.js";
import { initAuth, isSignedIn, signOut, userName } from "./auth.js";
import { announce, clear, errorBox, h } from "./dom.js";
import { configItemPage, configListPage } from "./pages/config.js";
import { jobPage } from "./pages/job.js";
import { jobsPage } from "./pages/jobs.js";
import { messagePage } from "./pages/message.js";
import { messagesPage } from "./pages/messages.js";
import { monitoringPage } from "./pages/monitoring.js";
import { runsPage } from "./pages/runs.js";
import { signInPage } from "./pages/signin.js";

const GUID = "([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})";
const KIND = "(entities|formats|transforms|projects)";
const ROUTES = [
  [/^\/workspace\/(?:jobs\/?)?$/, "jobs", jobsPage],
  [/^\/workspace\/jobs\/new$/, "jobs", jobPage],
  [new RegExp(`^/workspace/jobs/${GUID}$`), "jobs", jobPage],
  [new RegExp(`^/workspace/jobs/${GUID}/messages$`), "jobs", messagesPage],
  [new RegExp(`^/workspace/jobs/${GUID}/runs$`), "jobs", runsPage],
  [new RegExp(`^/workspace/jobs/${GUID}/monitoring$`), "jobs", monitoringPage],
  [new RegExp(`^/workspace/messages/${GUID}$`), "jobs", messagePage],
  [new RegExp(`^/workspace/config(?:/${KIND})?/?$`), "config", configListPage],
  [new RegExp(`^/workspace/config/${KIND}/([^/]+)$`), "config", configItemPage],
];

let generation = 0;
let leaveHandlers = [];
let appConfig = null;

export function navigate(href, { replace = false } = {}) {
  if (replace) window.history.replaceState(null, "", href);
  else window.history.pushState(null, "", href);
  render();
}

function setNav(section) {
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function renderSession() {
  const box = document.getElementById("session");
  if (!isSignedIn()) {
    clear(box);
    return;
  }
  clear(
    box,
    h("span", { class: "user", text: userName() }),
    h("button", { type: "button", class: "link-button", onclick: () => signOut(), text: "Sign out" }),
  );
}

async function render() {
  const current = ++generation;
  for (const leave of leaveHandlers) leave();
  leaveHandlers = [];
  const main = document.getElementById("main");
  const path = window.location.pathname;
  const query = new URLSearchParams(window.location.search);
  renderSession();
  const ctx = {
    main,
    query,
    config: appConfig,
    navigate,
    isCurrent: () => current === generation,
    onLeave: (fn) => leaveHandlers.push(fn),
    setTitle(title) {
      document.title = `${title} – Data management workspace`;
    },
    // Focus the page heading after a navigation (screen readers read it; keyboard users start there).
    ready(title) {
      const heading = main.querySelector("h1");
      if (heading) {
        heading.setAttribute("tabindex", "-1");
        heading.focus({ preventScroll: true });
      }
      announce(`${title} page loaded`);
      main.setAttribute("aria-busy", "false");
      document.body.dataset.page = ctx.pageName || "";
      // For tools/screenshots.py's load times: from navigation start to a page that shows its data.
      performance.mark("workspace-ready");
    },
  };
  main.setAttribute("aria-busy", "true");
  if (!isSignedIn()) {
    setNav(null);
    ctx.pageName = "signin";
    await signInPage(ctx);
    return;
  }
  for (const [pattern, section, page] of ROUTES) {
    const match = pattern.exec(path);
    if (!match) continue;
    setNav(section);
    ctx.params = match.slice(1);
    ctx.pageName = page.name.replace(/Page$/, "");
    try {
      await page(ctx);
    } catch (error) {
      if (current === generation) {
        clear(main, h("h1", { text: "This page could not be shown" }), errorBox(error, { retry: render }));
        ctx.ready("Error");
      }
    }
    return;
  }
  setNav(null);
  clear(
    main,
    h("h1", { text: "Page not found" }),
    h("p", {}, "There is no workspace page at ", h("code", { text: path }), ". "),
    h("p", {}, h("a", { href: "/workspace/jobs", "data-link": "", text: "Go to the recurring data jobs" })),
  );
  ctx.setTitle("Page not found");
  ctx.ready("Page not found");
}

function onClick(event) {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest("a[href]");
  if (!link || link.target || link.hasAttribute("download")) return;
  const url = new URL(link.href, window.location.href);
  if (url.origin !== window.location.origin || !url.pathname.startsWith("/workspace/")) return;
  if (url.pathname === window.location.pathname && url.search === window.location.search && url.hash) return;
  if (/\.[a-z0-9]+$/i.test(url.pathname)) return; // a file, not a page
  event.preventDefault();
  navigate(url.pathname + url.search);
}

async function start() {
  const main = document.getElementById("main");
  try {
    const response = await fetch("/workspace/config.json", { cache: "no-store" });
    if (!response.ok) throw new Error(`/workspace/config.json answered ${response.status}`);
    appConfig = await response.json();
    await initAuth(appConfig);
  } catch (error) {
    clear(main, h("h1", { text: "The workspace could not start" }), errorBox(error));
    return;
  }
  hooks.onUnauthorized = (message) => {
    appConfig.lastAuthError = message;
    if (appConfig.authMode === "local") render();
  };
  document.addEventListener("click", onClick);
  window.addEventListener("popstate", render);
  render();
}

start();
