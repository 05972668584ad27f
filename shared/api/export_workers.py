"""Queue-triggered export work: run an export, and end a run the host gave up on (poison) in Error."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.storage import names

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.queue_trigger(arg_name="msg", queue_name=names.QUEUE_EXPORT, connection=names.SETTING_STORAGE)
def export_worker(msg: func.QueueMessage) -> None:
    from shared.services import work_items
    from shared.services.registry import export_service

    try:
        item = work_items.decode(msg.get_body())
    except ValueError:
        log.error("dropping an unreadable export work item %s", msg.id)
        return
    export_service().handle(item)


@bp.queue_trigger(arg_name="msg", queue_name=names.QUEUE_EXPORT_POISON, connection=names.SETTING_STORAGE)
def export_poison(msg: func.QueueMessage) -> None:
    from shared.services import work_items
    from shared.services.registry import export_service

    try:
        item = work_items.decode(msg.get_body())
    except ValueError:
        log.error("dropping an unreadable export poison item %s", msg.id)
        return
    export_service().handle_poison(item)
