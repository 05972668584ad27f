// Monitoring: the job's queue load over time (waiting messages and the oldest one's age, from the samples
// of the monitoring recurrence) with the backlog threshold, drawn with uPlot; the same data as a table.
import { enc, getJson, q, continuationOf } from "../api.js";
import { age, clear, emptyState, errorBox, h, loadScript, localTime, num, table, time } from "../dom.js";
import { monitoringText } from "../words.js";
import { jobHeader, loadJob } from "./jobnav.js";

const RANGES = [["1", "Last hour"], ["6", "Last 6 hours"], ["24", "Last 24 hours"], ["168", "Last 7 days"]];
const MAX_PAGES = 5;

export async function monitoringPage(ctx) {
  const { main, query } = ctx;
  const activityId = ctx.params[0];
  const [{ job, operation }] = await Promise.all([loadJob(activityId), loadScript("/workspace/vendor/uPlot.iife.min.js")]);
  if (!ctx.isCurrent()) return;
  const title = `${job.name}: monitoring`;
  ctx.setTitle(title);
  const threshold = job.monitoring ? job.monitoring.backlogThreshold : null;

  const range = h("select", { id: "range" }, RANGES.map(([v, label]) => h("option", { value: v, selected: v === (query.get("hours") || "24"), text: label })));
  const refresh = h("button", { type: "button", class: "secondary", id: "refresh-chart", text: "Refresh" });
  const chartBox = h("div", { id: "queue-chart", class: "chart" });
  const after = h("div");
  let plot = null;

  async function samples(hours) {
    const since = new Date(Date.now() - hours * 3600 * 1000).toISOString();
    const out = [];
    let token = null;
    for (let i = 0; i < MAX_PAGES; i++) {
      const page = await getJson(`/api/manage/jobs/${enc(activityId)}/queueload${q({ since, top: 1000, continuation: token })}`);
      out.push(...page.value);
      token = continuationOf(page.nextLink);
      if (!token) break;
    }
    return out.reverse(); // oldest first
  }

  async function draw() {
    let data;
    try {
      data = await samples(Number(range.value));
    } catch (error) {
      clear(after, errorBox(error, { retry: draw }));
      return;
    }
    if (!ctx.isCurrent()) return;
    if (plot) {
      plot.destroy();
      plot = null;
    }
    chartBox.replaceChildren();
    if (!data.length) {
      chartBox.hidden = true;
      clear(after, emptyState("No samples in this period.", h("p", { text: job.monitoring
        ? `The monitoring recurrence (${monitoringText(job.monitoring)}) writes a sample each time it runs.`
        : "The monitoring recurrence is off for this job: turn it on under Settings to sample the queue load." })));
      return;
    }
    chartBox.hidden = false;
    const xs = data.map((s) => new Date(s.sampledAt).getTime() / 1000);
    const waiting = data.map((s) => s.waiting);
    // The age axis in a unit that suits the data: seconds, minutes or hours.
    const maxAge = Math.max(...data.map((s) => s.oldestAgeSeconds || 0));
    const [unit, per] = maxAge < 120 ? ["seconds", 1] : maxAge < 7200 ? ["minutes", 60] : ["hours", 3600];
    const oldest = data.map((s) => Math.round(((s.oldestAgeSeconds || 0) / per) * 10) / 10);
    const series = [xs, waiting, oldest];
    const opts = {
      width: Math.max(300, Math.min(chartBox.clientWidth || 900, 1100)),
      height: 320,
      scales: { x: { time: true }, count: { range: (u, min, max) => [0, Math.max(max, threshold || 0) * 1.1 || 1] } },
      series: [
        { label: "Time" },
        { label: "Waiting messages", scale: "count", stroke: "#0b5cad", width: 2, fill: "rgba(11,92,173,0.08)" },
        { label: `Oldest waiting (${unit})`, scale: "age", stroke: "#a34a00", width: 2 },
      ],
      axes: [
        {},
        { scale: "count", label: "Waiting messages" },
        { scale: "age", side: 1, label: `Oldest waiting (${unit})`, grid: { show: false } },
      ],
    };
    if (threshold !== null) {
      series.push(xs.map(() => threshold));
      opts.series.push({ label: "Backlog threshold", scale: "count", stroke: "#c62828", width: 1.5, dash: [8, 5], points: { show: false } });
    }
    const last = data[data.length - 1];
    chartBox.setAttribute("role", "img");
    chartBox.setAttribute("aria-label", `Queue load chart: ${data.length} samples from ${localTime(data[0].sampledAt)} to ${localTime(last.sampledAt)}; `
      + `latest ${last.waiting} waiting, oldest ${age(last.oldestAgeSeconds)}${threshold !== null ? `; threshold ${threshold}` : ""}.`);
    plot = new window.uPlot(opts, series, chartBox);
    const peak = Math.max(...waiting);
    clear(after,
      h("p", { id: "chart-summary" }, `${data.length} samples. Now: ${num(last.waiting)} waiting, the oldest for ${age(last.oldestAgeSeconds)}. `
        + `Peak: ${num(peak)} waiting.${threshold !== null ? ` Threshold: ${num(threshold)}${peak >= threshold ? " (crossed)" : ""}.` : ""}`),
      h("details", {}, h("summary", { text: "The samples as a table" }),
        table({
          caption: "Queue-load samples, newest first",
          columns: ["Sampled", "Waiting", "Oldest waiting"],
          rows: [...data].reverse().slice(0, 200).map((s) => [time(s.sampledAt), num(s.waiting), age(s.oldestAgeSeconds)]),
        })));
  }

  const onResize = () => { if (plot) plot.setSize({ width: Math.max(300, Math.min(chartBox.clientWidth, 1100)), height: 320 }); };
  window.addEventListener("resize", onResize);
  ctx.onLeave(() => { window.removeEventListener("resize", onResize); if (plot) plot.destroy(); });
  range.addEventListener("change", () => {
    window.history.replaceState(null, "", `/workspace/jobs/${job.activityId}/monitoring${q({ hours: range.value === "24" ? "" : range.value })}`);
    draw();
  });
  refresh.addEventListener("click", draw);

  clear(main, ...jobHeader(job, operation, "monitoring", title),
    h("p", {}, `Monitoring recurrence: ${monitoringText(job.monitoring)}.`),
    h("div", { class: "toolbar" }, h("div", { class: "field" }, h("label", { for: "range", text: "Period" }), range), refresh),
    chartBox, after);
  await draw();
  ctx.ready(title);
}
