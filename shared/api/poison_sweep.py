"""The poison sweeper timer (NCRONTAB from the POISON_SWEEP_SCHEDULE setting): ends work the host gave up on.

Not a queue trigger on the `-poison` queues: on the real host such a queue has no poison queue of its own,
so an item whose handler fails is never dead-lettered (HOST.md, "Queue triggers"). See
shared.services.poison_sweeper.
"""

from __future__ import annotations

import logging

import azure.functions as func

bp = func.Blueprint()
log = logging.getLogger(__name__)


# use_monitor=False: every occurrence does the same work, so a missed one needs no catch-up run.
@bp.timer_trigger(
    arg_name="timer", schedule="%POISON_SWEEP_SCHEDULE%", run_on_startup=False, use_monitor=False
)
def poison_sweeper(timer: func.TimerRequest) -> None:
    from shared.services.registry import poison_sweeper as sweeper

    summary = sweeper().sweep()
    if any(sum(counts.values()) for counts in summary.values()):
        log.info("poison sweep: %s", summary)
