"""The outcome of an import run from the messages it handled: counts, status and reasons (issue 11, item 4).

Status, matching the execution summary D365 clients read (PROTOCOL §6, package_api_service.summary_of):
- `Ended`: every message ended Processed (Succeeded);
- `Ended` with `WithErrors`: records were rejected, or some but not all messages failed (PartiallySucceeded);
- `Error`: every message failed, or the run stopped before handling any (Failed).
A message counts as failed in this run when it ended PreProcessingError/PostProcessingFailed, when it was
retried in another run (its RunId moved on), or when it is still active (the run's worker stopped).
"""

from __future__ import annotations

from shared.domain import statuses

MAX_ERRORS = 20  # reasons kept on a run (a property holds 64 KB)
_FAILED = (statuses.PREPROCESSING_ERROR, statuses.POSTPROCESSING_FAILED)


def _first_line(text) -> str:
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    return lines[0][:500] if lines else ""


def run_outcome(run_id: str, messages: list[dict], error: str | None = None) -> tuple[str, dict]:
    """(run status, fields to merge: Counts, WithErrors, Errors) of run `run_id`.

    Counts: {"messages", "failedMessages", "read", "written", "rejected"}; records summed over the messages
    that ended in this run. `error` is the run's own failure (a drain that stopped), listed first."""
    counts = {"messages": len(messages), "failedMessages": 0, "read": 0, "written": 0, "rejected": 0}
    reasons: list[str] = [error] if error else []
    failed = with_errors = 0
    for m in messages:
        status = m.get("Status")
        label = f"message {m.get('MessageId')}" + (
            f" ({m['ExternalIdentifier']})" if m.get("ExternalIdentifier") else ""
        )
        moved_on = m.get("RunId") and m.get("RunId") != run_id
        if moved_on:
            failed += 1
            reasons.append(f"{label}: the attempt in this run did not finish; retried in run {m['RunId']}")
            continue
        for entity in (m.get("Counts") or {}).values():
            if isinstance(entity, dict):
                for key in ("read", "written", "rejected"):
                    counts[key] += int(entity.get(key) or 0)
        if status in _FAILED:
            failed += 1
            reasons.append(f"{label}: {status}: {_first_line(m.get('ErrorSummary')) or 'no reason recorded'}")
        elif status == statuses.PROCESSED_WITH_ERRORS:
            with_errors += 1
            reasons.append(f"{label}: {status}: {_first_line(m.get('ErrorSummary'))}".rstrip(": "))
        elif status != statuses.PROCESSED:
            failed += 1
            reasons.append(f"{label}: the worker stopped while it was {status}")
    counts["failedMessages"] = failed
    if (messages and failed == len(messages)) or (not messages and error):
        status = statuses.RUN_ERROR
    else:
        status = statuses.RUN_ENDED
    partly = status == statuses.RUN_ENDED and bool(failed or with_errors or counts["rejected"])
    if len(reasons) > MAX_ERRORS:
        reasons = [*reasons[: MAX_ERRORS - 1], f"... and {len(reasons) - MAX_ERRORS + 1} more"]
    return status, {"Counts": counts, "WithErrors": partly, "Errors": reasons}
