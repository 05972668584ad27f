"""Fault points for the crash tests (tests/faults): local mode only, driven by files in a directory.

With `DEV_FAULT_PLAN_DIR` set (and `AUTH_MODE=local`, outside Azure), a file `<dir>/<step>.<key>`
holding `"<action> <times>"` arms the point `step` for `key` (a message ID, or a run ID for exports):

- `kill`: the process sends itself SIGKILL, as when a host instance dies mid-invocation;
- `raise`: a RuntimeError, as a failing dependency would.

Each hit fires while `times` (default 1) is above zero and counts it down in the file, so a plan survives
the restart of a killed worker. Every firing is appended to `<dir>/fired.log` as "step key action" before
it acts, so a test can count what really happened. In Azure (`WEBSITE_INSTANCE_ID`) or outside local auth
mode the points do nothing, whatever the settings say.

Steps: claimed, preprocessing, processing, terminal (before the outcome is written), ended (after it, before
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
            action, _, times = plan.read().strip().partition(" ")
    except FileNotFoundError:
        return
    remaining = int(times or 1)
    if remaining <= 0:
        return
    spare = f"{path}.{os.getpid()}"
    with open(spare, "w", encoding="utf-8") as plan:
        plan.write(f"{action} {remaining - 1}")
    os.replace(spare, path)
    with open(os.path.join(directory, FIRED_LOG), "a", encoding="utf-8") as fired:
        fired.write(f"{step} {key} {action}\n")
    log.warning("fault point %s for %s: %s (%s)", step, key, action, PLAN_DIR_SETTING)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise RuntimeError(f"injected fault at {step} ({PLAN_DIR_SETTING})")
