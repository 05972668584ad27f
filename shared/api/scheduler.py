"""The scheduler timer (NCRONTAB from the SCHEDULER_SCHEDULE setting): recurrences and monitoring."""

from __future__ import annotations

import logging

import azure.functions as func

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.timer_trigger(arg_name="timer", schedule="%SCHEDULER_SCHEDULE%", run_on_startup=False, use_monitor=True)
def scheduler_tick(timer: func.TimerRequest) -> None:
    from shared.services.registry import scheduler

    summary = scheduler().tick()
    if any(summary.values()):
        log.info("scheduler: %s", summary)
