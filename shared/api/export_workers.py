"""The queue-triggered export worker. On its last allowed delivery a failing run ends in Error itself
(shared.queue_limits); items the host still poisons are ended by the poison sweeper timer."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.storage import names

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.queue_trigger(arg_name="msg", queue_name=names.QUEUE_EXPORT, connection=names.SETTING_STORAGE)
def export_worker(msg: func.QueueMessage) -> None:
    from shared import queue_limits
    from shared.services import work_items
    from shared.services.registry import export_service

    try:
        item = work_items.decode(msg.get_body())
    except ValueError:
        log.error("dropping an unreadable export work item %s: %r", msg.id, msg.get_body()[:200])
        return
    export_service().handle(item, delivery=queue_limits.delivery(msg.dequeue_count))
