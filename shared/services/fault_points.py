"""Fault points for the crash tests (tests/faults): local mode only, driven by files in a directory.

With `DEV_FAULT_PLAN_DIR` set (and `AUTH_MODE=local`, outside Azure), a file `<dir>/<step>.<key>`
holding `"<action> <times> [<skip>]"` arms the point `step` for `key` (a message ID, or a run ID for
exports), after its first `skip` hits (default 0):

- `kill`: the process sends itself SIGKILL, as when a host instance dies mid-invocation;
- `raise`: a RuntimeError, as a failing dependency would.

Each hit fires while `times` (default 1) is above zero and counts it down in the file, so a plan survives
the restart of a killed worker. Every firing is appended to `<dir>/fired.log` as "step key action" before
it acts, so a test can count what really happened. In Azure (`WEBSITE_INSTANCE_ID`) or outside local auth
mode the points do nothing, whatever the settings say.

Steps: claimed, preprocessing, processing (after the first written chunk), checkpoint (after an import
checkpoint was saved), terminal (before the outcome is written), ended (after it, before
the run's end), fail_write (the terminal PostProcessingFailed/Error write itself), export (an export run has
started).
"""

from __future__ import annotations

import logging
import os
import signal

from shared import settings

log = logging.getLogger(__name__)

PLAN_DIR_SETTING = "DEV_FAULT_PLAN_DIR"
FIRED_LOG = "fired.log"


def hit(step: str, key: str | None) -> None:
    """Fire the point `step` for `key` when a plan arms it; otherwise return at once."""
    directory = os.environ.get(PLAN_DIR_SETTING)
    if not directory or not key:
        return
    if settings.auth_mode() != "local" or settings.running_in_azure():
        return
    path = os.path.join(directory, f"{step}.{key}")
    try:
        with open(path, encoding="utf-8") as plan:
            action, *numbers = plan.read().split()
    except FileNotFoundError:
        return
    remaining = int(numbers[0]) if numbers else 1
    skip = int(numbers[1]) if len(numbers) > 1 else 0
    if remaining <= 0:
        return
    spare = f"{path}.{os.getpid()}"
    with open(spare, "w", encoding="utf-8") as plan:
        plan.write(f"{action} {remaining} {skip - 1}" if skip > 0 else f"{action} {remaining - 1}")
    os.replace(spare, path)
    if skip > 0:
        return
    with open(os.path.join(directory, FIRED_LOG), "a", encoding="utf-8") as fired:
        fired.write(f"{step} {key} {action}\n")
    log.warning("fault point %s for %s: %s (%s)", step, key, action, PLAN_DIR_SETTING)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise RuntimeError(f"injected fault at {step} ({PLAN_DIR_SETTING})")


FAIL_ONCE_DIR_SETTING = "DEV_FAULT_FAIL_ONCE_DIR"


def fail_once_after_first_chunk(message_id: str, chunks_done: int) -> None:
    """The older, job-wide fault of the e2e retry test: with `<DEV_FAULT_FAIL_ONCE_DIR>/armed` present, every
    message fails once after its first written chunk (a marker per message makes it once). Local mode only."""
    directory = os.environ.get(FAIL_ONCE_DIR_SETTING)
    if chunks_done != 1 or not directory or settings.auth_mode() != "local" or settings.running_in_azure():
        return
    marker = os.path.join(directory, message_id)
    if os.path.exists(os.path.join(directory, "armed")) and not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError(f"injected fault after the first chunk ({FAIL_ONCE_DIR_SETTING})")
