"""Wires services to the process-wide storage clients, once per settings (handlers call these)."""

from __future__ import annotations

import threading
from typing import Any

from shared.storage import names
from shared.storage.factory import get_clients

_lock = threading.RLock()  # builders call other builders
_services: dict[tuple[int, str], Any] = {}


def _get(kind: str, build):
    clients = get_clients()
    key = (id(clients), kind)
    with _lock:
        service = _services.get(key)
        if service is None:
            service = build(clients)
            _services[key] = service
        return service


def config_service():
    def build(clients):
        from shared.services.config_service import ConfigService
        from shared.storage.config_repo import ConfigRepository

        return ConfigService(
            ConfigRepository(clients.table(names.TABLE_CONFIG)), clients.container(names.CONTAINER_ARTIFACTS)
        )

    return _get("config", build)


def message_repo():
    def build(clients):
        from shared.storage.message_repo import MessageRepository

        return MessageRepository(
            clients.table(names.TABLE_MESSAGES), clients.table(names.TABLE_MESSAGE_INDEX)
        )

    return _get("messages", build)


def run_repo():
    def build(clients):
        from shared.storage.run_repo import RunRepository

        return RunRepository(
            clients.table(names.TABLE_RUNS), clients.table(names.TABLE_RUN_INDEX), messages=message_repo()
        )

    return _get("runs", build)


def entity_repo():
    def build(clients):
        from shared import settings
        from shared.storage.entity_repo import EntityRepository

        return EntityRepository(clients, buckets=settings.entity_partition_buckets())

    return _get("entities", build)


def dispatcher():
    def build(clients):
        from shared.services.dispatch import Dispatcher

        return Dispatcher(
            message_repo(), clients.queue(names.QUEUE_IMPORT), pending=clients.table(names.TABLE_SCHEDULE)
        )

    return _get("dispatcher", build)


def enqueue_service():
    def build(clients):
        from shared.services.enqueue_service import EnqueueService

        return EnqueueService(
            config_service(), message_repo(), clients.container(names.CONTAINER_INBOUND), dispatcher()
        )

    return _get("enqueue", build)


def import_worker():
    def build(clients):
        from shared.services.import_worker import ImportWorker
        from shared.storage.lease_repo import LeaseRepository

        return ImportWorker(
            config=config_service(),
            messages=message_repo(),
            runs=run_repo(),
            entities=entity_repo(),
            inbound=clients.container(names.CONTAINER_INBOUND),
            errors=clients.container(names.CONTAINER_ERRORS),
            dispatcher=dispatcher(),
            leases=LeaseRepository(clients.table(names.TABLE_LEASES)),
        )

    return _get("import_worker", build)


def scheduler():
    def build(clients):
        from shared.services.scheduler import Scheduler

        return Scheduler(
            config=config_service(),
            dispatcher=dispatcher(),
            messages=message_repo(),
            schedule_table=clients.table(names.TABLE_SCHEDULE),
            queueload_table=clients.table(names.TABLE_QUEUE_LOAD),
            export_starter=lambda job, trigger: export_service().start(job, trigger),
        )

    return _get("scheduler", build)


def errors_container():
    return get_clients().container(names.CONTAINER_ERRORS)


def export_service():
    def build(clients):
        from shared.services.export_service import ExportService

        return ExportService(
            config=config_service(),
            messages=message_repo(),
            runs=run_repo(),
            entities=entity_repo(),
            outbound=clients.container(names.CONTAINER_OUTBOUND),
            queue=clients.queue(names.QUEUE_EXPORT),
        )

    return _get("export", build)


def outbound_service():
    def build(clients):
        from shared.services.outbound_service import OutboundService

        return OutboundService(messages=message_repo(), outbound=clients.container(names.CONTAINER_OUTBOUND))

    return _get("outbound", build)


def package_api_service():
    def build(clients):
        from shared.services.package_api_service import PackageApiService

        return PackageApiService(
            clients=clients,
            config=config_service(),
            messages=message_repo(),
            runs=run_repo(),
            dispatcher=dispatcher(),
            export_service=export_service(),
        )

    return _get("package_api", build)


def poison_sweeper():
    def build(clients):
        from shared.services.poison_sweeper import PoisonSweeper

        # Clients without the base64 decode policy: the sweeper decodes each item itself, so that one
        # unreadable item can be deleted instead of failing every receive.
        def raw(name: str):
            return clients.queue_service.get_queue_client(name)

        return PoisonSweeper(
            {
                names.QUEUE_IMPORT_POISON: (raw(names.QUEUE_IMPORT_POISON), import_worker().handle_poison),
                names.QUEUE_EXPORT_POISON: (raw(names.QUEUE_EXPORT_POISON), export_service().handle_poison),
            }
        )

    return _get("poison_sweeper", build)
