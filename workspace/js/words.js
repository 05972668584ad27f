// Settings in words, as D365's "Define recurrence" dialog summarizes them.
import { localTime } from "./dom.js";

const UNIT = { minutes: "minute", hours: "hour", days: "day", weeks: "week", months: "month" };

export function every(unit, interval) {
  const one = UNIT[unit] || unit;
  return interval === 1 ? `Every ${one}` : `Every ${interval} ${one}s`;
}

export function recurrenceText(rec) {
  if (!rec) return "No recurrence (runs only on demand)";
  let text = every(rec.unit, rec.interval);
  if (rec.start) text += `, from ${localTime(rec.start)}`;
  if (rec.end) text += `, until ${localTime(rec.end)}`;
  if (rec.count) text += `, ${rec.count} times`;
  return text;
}

export function monitoringText(mon) {
  if (!mon) return "Off";
  return `${every(mon.unit, mon.interval)}; process early at ${mon.backlogThreshold} waiting`;
}
