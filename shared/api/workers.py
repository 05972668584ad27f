"""Queue-triggered workers: import work, and the poison queue that ends failed work in a terminal status."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.storage import names

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.queue_trigger(arg_name="msg", queue_name=names.QUEUE_IMPORT, connection=names.SETTING_STORAGE)
def import_worker(msg: func.QueueMessage) -> None:
    from shared.services import work_items
    from shared.services.registry import import_worker as worker

    try:
        item = work_items.decode(msg.get_body())
    except ValueError:
        log.error("dropping an unreadable import work item %s", msg.id)
        return
    worker().handle(item, claim_token=msg.id)


@bp.queue_trigger(arg_name="msg", queue_name=names.QUEUE_IMPORT_POISON, connection=names.SETTING_STORAGE)
def import_poison(msg: func.QueueMessage) -> None:
    from shared.services import work_items
    from shared.services.registry import import_worker as worker

    try:
        item = work_items.decode(msg.get_body())
    except ValueError:
        log.error("dropping an unreadable poison item %s", msg.id)
        return
    worker().handle_poison(item)
