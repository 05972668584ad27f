"""Workers killed at every step, and terminal writes that fail: every message and run still ends terminal.

Real processes: the app's queue functions and its poison sweeper under `python -m tools.devhost`, on an
Azurite of this module's own (so no other host of the session takes the work), killed with SIGKILL by the
app's fault points (shared/services/fault_points.py, local mode only) and started again by the test, as
the platform starts a new instance after one dies. The test process creates the configuration, enqueues
and dispatches through the services, and reads the outcome from storage.

The host rules these runs rely on are the Storage Queues extension's (Azure/azure-sdk-for-net,
sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Common/src/Shared/Queues/QueueProcessor.cs):
- CompleteProcessingMessageAsync: a failed invocation with DequeueCount >= MaxDequeueCount is copied to
  `<queue>-poison` and deleted; below that the message becomes visible again after visibilityTimeout;
- BeginProcessingMessageAsync: a message received with DequeueCount > MaxDequeueCount (its last run died)
  is poisoned without being invoked;
- a message whose worker died is invisible until its receive visibility lapses (QueueListener renews it
  while the function runs), then comes back with its dequeue count one higher.

maxDequeueCount is 2 here, so every message has two deliveries. The app reads it from the app setting
`AzureFunctionsJobHost__extensions__queues__maxDequeueCount` (shared/queue_limits.py); the local host does
not read that override (tools/devhost/settings.py reads host.json only), so the worker runs from a root
that holds a host.json with the same value, a 1 s visibilityTimeout and one message at a time.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from shared.domain import statuses
from tests.devhost.hostproc import HostProcess, clean_env

pytestmark = pytest.mark.azurite

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_DELIVERIES = 2
LEASE_SECONDS = 4  # how long a message whose worker was killed stays invisible (--queue-lease)
ROWS = 250  # per file: several table batches, so "processing" is killed with part of the rows written
WAIT = 90.0  # seconds; a healthy run takes a fraction of this
ABANDONED = "the host moved its work item to the poison queue"
KILLED = "the worker stopped during the attempt without recording an error (killed or timed out)"
TERMINAL_RUN = {statuses.RUN_ENDED, statuses.RUN_ERROR, statuses.RUN_CANCELED}


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    from tools.azurite import start_azurite

    with start_azurite(in_memory=True, log_path=tmp_path_factory.mktemp("azurite") / "azurite.log") as az:
        yield az


class Workers:
    """The app in two local host processes, shaped as Flex Consumption runs it (queue functions and the timer
    on instances of their own): the queue workers, started again whenever a fault point killed them, and the
    poison sweeper, never killed. A killed timer instance would hold the timer's singleton lock until its
    lease lapses (a minute), as on the real host."""

    def __init__(self, root: Path, env: dict[str, str], logs: Path) -> None:
        self.root, self.env, self.logs = root, env, logs
        self.started = 0
        self.host: HostProcess | None = None
        self.sweeper = HostProcess(root, env, logs, "--functions", "poison_sweeper", name="sweeper")
        self.sweeper.wait_started(60)
        self.start()

    def start(self) -> None:
        self.started += 1
        self.host = HostProcess(
            self.root,
            self.env,
            self.logs,
            "--functions",
            "import_worker",
            "export_worker",
            "--queue-lease",
            str(LEASE_SECONDS),
            name=f"worker{self.started}",
        )
        self.host.wait_started(60)

    @property
    def kills(self) -> int:
        return self.started - 1

    def wait_for(self, done, what: str, timeout: float = WAIT) -> None:
        """Poll `done()` until true, starting the workers again each time they have died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return
            assert self.sweeper.proc.poll() is None, f"the sweeper process died:\n{self.log_tail()}"
            if self.host.proc.poll() is not None:
                self.start()
            time.sleep(0.2)
        raise AssertionError(f"{what} within {timeout}s; logs:\n{self.log_tail()}")

    def log_tail(self, chars: int = 8000) -> str:
        text = "".join(
            f"--- {path.name}\n{path.read_text(errors='replace')}" for path in sorted(self.logs.glob("*.err"))
        )
        return text[-chars:]

    def stop(self) -> None:
        for host in (self.host, self.sweeper):
            if host is not None:
                host.stop()


@pytest.fixture
def world(app_env, storage, tmp_path, monkeypatch, request):
    """Services of this process on the module's Azurite, a fault plan, and the app's processes.

    Parametrized indirectly with {"checkpoints": False}, imports are not checkpointed (small files then take
    the fewest writes: their Processing transition is written with the terminal status)."""
    checkpoints = getattr(request, "param", {}).get("checkpoints", True)
    from shared.queue_limits import OVERRIDE_SETTING

    monkeypatch.setenv("AzureWebJobsStorage", storage.connection_string)
    plan = tmp_path / "plan"
    plan.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    host_json = json.loads((REPO_ROOT / "host.json").read_text(encoding="utf-8"))
    host_json["extensions"]["queues"].update(
        batchSize=1,
        newBatchThreshold=0,
        maxPollingInterval="00:00:01",
        visibilityTimeout="00:00:01",
        maxDequeueCount=MAX_DELIVERIES,
    )
    (root / "host.json").write_text(json.dumps(host_json), encoding="utf-8")
    shutil.copy(REPO_ROOT / "local.settings.example.json", root)
    env = clean_env(
        **{
            **app_env,
            "AzureWebJobsStorage": storage.connection_string,
            OVERRIDE_SETTING: str(MAX_DELIVERIES),
            "DEV_FAULT_PLAN_DIR": str(plan),
            "POISON_SWEEP_SCHEDULE": "* * * * * *",  # every second
            # Every import is checkpointed (shared/services/import_checkpoint.py), every 100 rows: killed
            # workers resume from checkpoints in every test here.
            "IMPORT_CHECKPOINT_MIN_BYTES": "0" if checkpoints else str(1 << 30),
            "IMPORT_CHECKPOINT_ROWS": "100",
        }
    )

    from shared.services import registry

    class World:
        services = registry

        @staticmethod
        def arm(step: str, key: str, action: str, times: int = 99, skip: int = 0) -> None:
            (plan / f"{step}.{key}").write_text(f"{action} {times} {skip}", encoding="utf-8")

        @staticmethod
        def fired() -> Counter:
            log = plan / "fired.log"
            lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
            return Counter(tuple(line.split()) for line in lines)

        workers: Workers

    registry.config_service()  # creates the tables and queues the worker polls (the host never creates them)
    from tests.conftest import seed_legal_entities

    seed_legal_entities()  # this module's storage: the companies its jobs name
    registry.dispatcher()
    registry.export_service()
    World.workers = Workers(root, env, tmp_path / "logs")
    try:
        yield World
    finally:
        World.workers.stop()


def _import_job(services, *, in_order: bool = False, on_arrival: bool = False):
    config = services.config_service()
    entity = f"Ft{uuid.uuid4().hex[:8]}"
    config.upsert_entity(entity, {"keys": ["K"], "fields": [{"name": "K"}, {"name": "V", "type": "int"}]})
    config.upsert_project(entity, {"operation": "import", "entities": [{"entity": entity}]})
    app = str(uuid.uuid4())
    job = config.create_job(
        {
            "name": entity,
            "project": entity,
            "company": "usmf",
            "processInOrder": in_order,
            "processOnArrival": on_arrival,
            "authorizationPolicy": [{"applicationId": app}],
        }
    ).value
    from shared.auth.principal import Principal

    return job, Principal(app_id=app), entity


def _export_job(services, entity: str):
    config = services.config_service()
    config.upsert_project(f"{entity}-out", {"operation": "export", "entities": [{"entity": entity}]})
    return config.create_job(
        {
            "name": f"{entity}-out",
            "project": f"{entity}-out",
            "company": "usmf",
            "authorizationPolicy": [{"applicationId": str(uuid.uuid4())}],
        }
    ).value


def _file(tag: str) -> bytes:
    return ("K,V\n" + "".join(f"{tag}-{i},{i}\n" for i in range(ROWS))).encode("ascii")


def _enqueue(services, job, principal, entity, tag: str) -> str:
    return services.enqueue_service().enqueue(
        job.activity_id, principal, _file(tag), entity=entity, company=None, external_id=f"{tag}.csv"
    )


def _dispatch(services, job, message_ids: list[str]) -> None:
    repo = services.message_repo()
    for message_id in message_ids:
        assert services.dispatcher().dispatch_message(
            job, repo.get_by_id(message_id), statuses.TRIGGER_MANUAL
        )


def _messages(services, message_ids: list[str]) -> dict[str, dict]:
    repo = services.message_repo()
    return {message_id: repo.get_by_id(message_id) for message_id in message_ids}


def _all_ended(services, message_ids: list[str]) -> bool:
    return all(m["Status"] in statuses.IMPORT_TERMINAL for m in _messages(services, message_ids).values())


def _runs(services, job) -> list[dict]:
    return services.run_repo().list_runs(job.activity_id)[0]


def test_a_worker_killed_at_each_step_resumes_and_imports_every_row_once(world):
    """Killed after the claim, during preprocessing, during processing (part of the rows written), just
    before the outcome is written, and between the outcome and the run's end: the redelivery (the last
    allowed one) imports the file exactly once, or only ends the run."""
    services = world.services
    job, principal, entity = _import_job(services)
    steps = ["claimed", "preprocessing", "processing", "terminal", "ended"]
    ids = {step: _enqueue(services, job, principal, entity, step) for step in steps}
    for step, message_id in ids.items():
        world.arm(step, message_id, "kill", times=1)
    _dispatch(services, job, list(ids.values()))

    world.workers.wait_for(lambda: _all_ended(services, list(ids.values())), "every message ended")

    assert world.fired() == Counter({(step, ids[step], "kill"): 1 for step in steps})
    assert world.workers.kills == len(steps)
    for step, message in zip(steps, _messages(services, [ids[step] for step in steps]).values(), strict=True):
        assert message["Status"] == statuses.PROCESSED, (step, message.get("ErrorSummary"))
        assert message["Attempts"] == (1 if step == "ended" else 2), step
        assert message["Counts"] == {entity: {"read": ROWS, "written": ROWS, "rejected": 0}}, step
    config_entity = services.config_service().get_entity(entity)
    rows = list(services.entity_repo().iter_rows(config_entity))
    assert len(rows) == len(steps) * ROWS
    assert {r["K"] for r in rows} == {f"{step}-{i}" for step in steps for i in range(ROWS)}
    # Killed after its run started and before the outcome (preprocessing, processing, terminal): that run
    # ended in Error when the retry began. Killed after the outcome: the redelivery ended the run.
    runs = _runs(services, job)
    assert Counter(r["Status"] for r in runs) == {statuses.RUN_ENDED: 5, statuses.RUN_ERROR: 3}
    assert all("the worker stopped during this run" in r["Errors"][0] for r in runs if r["Status"] == "Error")


@pytest.mark.parametrize("world", [{"checkpoints": False}], indirect=True)
def test_on_arrival_work_killed_at_each_step_ends_in_its_folded_run(world):
    """Process-on-arrival messages take the fewest storage calls (issue 14): claimed with the work item's
    ETag, Processing written with the terminal status, a folded run (its ID the message's) written when it
    ends. Killed at each step, every message is imported once and its one run ends, with every transition."""
    services = world.services
    job, principal, entity = _import_job(services, on_arrival=True)
    world.workers.host.stop()  # nothing is claimed before every fault point is armed
    steps = ["claimed", "preprocessing", "processing", "terminal", "ended"]
    ids = {step: _enqueue(services, job, principal, entity, step) for step in steps}
    for step, message_id in ids.items():
        world.arm(step, message_id, "kill", times=1)
    started = world.workers.started
    world.workers.start()

    def done() -> bool:
        runs = _runs(services, job)
        return _all_ended(services, list(ids.values())) and (
            len(runs) == len(steps) and all(r["Status"] in TERMINAL_RUN for r in runs)
        )

    world.workers.wait_for(done, "every message and its run ended")

    assert world.fired() == Counter({(step, ids[step], "kill"): 1 for step in steps})
    assert world.workers.started - started - 1 == len(steps)
    for step, message in zip(steps, _messages(services, [ids[step] for step in steps]).values(), strict=True):
        assert message["Status"] == statuses.PROCESSED, (step, message.get("ErrorSummary"))
        assert message["Attempts"] == (1 if step == "ended" else 2), step
        assert message["Counts"] == {entity: {"read": ROWS, "written": ROWS, "rejected": 0}}, step
        assert message["RunId"] == message["MessageId"], step
        trail = [t["status"] for t in message["Transitions"]]
        assert trail[0] == statuses.ENQUEUED and trail[-2:] == [statuses.PROCESSING, statuses.PROCESSED], (
            trail
        )
        assert all(t["at"] for t in message["Transitions"])
    rows = list(services.entity_repo().iter_rows(services.config_service().get_entity(entity)))
    assert len(rows) == len(steps) * ROWS
    runs = {r["RunId"]: r for r in _runs(services, job)}
    assert set(runs) == set(ids.values())
    for run in runs.values():
        assert run["Status"] == statuses.RUN_ENDED and run["Messages"] == [run["RunId"]], run
        assert run["Counts"]["written"] == ROWS and run["Trigger"] == statuses.TRIGGER_ON_ARRIVAL, run
        assert services.run_repo().get_run(run["RunId"])["Status"] == statuses.RUN_ENDED


def test_a_worker_killed_after_a_checkpoint_resumes_there(world):
    """SIGKILL right after the checkpoint at 200 rows (the staged rows are the first checkpoint): the next
    delivery does not preprocess the file again, writes the rest, and the counts and rows are exact."""
    from shared.storage import names
    from shared.storage.factory import get_clients

    services = world.services
    job, principal, entity = _import_job(services)
    message_id = _enqueue(services, job, principal, entity, "resume")
    world.arm("checkpoint", message_id, "kill", times=1, skip=2)
    _dispatch(services, job, [message_id])

    world.workers.wait_for(lambda: _all_ended(services, [message_id]), "the message ended")

    assert world.fired() == Counter({("checkpoint", message_id, "kill"): 1})
    message = _messages(services, [message_id])[message_id]
    assert message["Status"] == statuses.PROCESSED, message.get("ErrorSummary")
    assert message["Attempts"] == 2 and message["StagedAttempt"] == 1
    assert "preprocessing skipped, 200 record(s) already written" in message["ResumedFrom"]
    assert message["Counts"] == {entity: {"read": ROWS, "written": ROWS, "rejected": 0}}
    rows = list(services.entity_repo().iter_rows(services.config_service().get_entity(entity)))
    assert sorted(r["K"] for r in rows) == sorted(f"resume-{i}" for i in range(ROWS))
    staging = get_clients().container(names.CONTAINER_STAGING)
    assert list(staging.list_blobs(name_starts_with=f"{job.activity_id}/{message['RowKey']}/")) == []


def test_work_failing_on_every_delivery_ends_terminal_with_its_reason(world):
    """Without a kill: the last allowed delivery ends the work itself, and when that terminal write fails,
    the host's poison queue and the sweeper end it. A process-in-order job's other messages keep flowing."""
    services = world.services
    job, principal, entity = _import_job(services)
    failing = _enqueue(services, job, principal, entity, "failing")
    failing_write = _enqueue(services, job, principal, entity, "failing-write")
    world.arm("processing", failing, "raise")
    world.arm("processing", failing_write, "raise")
    world.arm("fail_write", failing_write, "raise", times=1)

    ordered, ordered_principal, ordered_entity = _import_job(services, in_order=True)
    in_order = [
        _enqueue(services, ordered, ordered_principal, ordered_entity, f"ordered{i}") for i in range(3)
    ]
    world.arm("preprocessing", in_order[0], "raise")

    export_job = _export_job(services, entity)
    exports = services.export_service()
    export_runs = [exports.start(export_job, statuses.TRIGGER_MANUAL) for _ in range(2)]
    for run_id in export_runs:
        world.arm("export", run_id, "raise")
    world.arm("fail_write", export_runs[1], "raise", times=1)

    _dispatch(services, job, [failing, failing_write])
    services.dispatcher().dispatch_drain(ordered, statuses.TRIGGER_MANUAL)
    all_imports = [failing, failing_write, *in_order]

    def done() -> bool:
        runs = [services.run_repo().get_run(r) for r in export_runs]
        # An import run ends after its last message's terminal write (a write of its own), so it is waited for too.
        imports = [r for each in (job, ordered) for r in _runs(services, each)]
        return (
            _all_ended(services, all_imports)
            and all(r["Status"] in TERMINAL_RUN for r in runs)
            and all(r["Status"] in TERMINAL_RUN for r in imports)
        )

    world.workers.wait_for(done, "every message, export run and import run ended")

    messages = _messages(services, all_imports)
    last = f"last allowed queue delivery {MAX_DELIVERIES} of {MAX_DELIVERIES}"
    assert messages[failing]["Status"] == statuses.POSTPROCESSING_FAILED
    # The fault fires after the first committed chunk: the reason says the import is partial (issue 11, item 3).
    partial = "record(s) were written before it failed, so the import is partial"
    assert messages[failing]["ErrorSummary"].startswith(
        f"the import failed on its {last}, after 2 attempt(s); "
    )
    assert partial in messages[failing]["ErrorSummary"] and messages[failing]["Partial"] is True
    assert messages[failing]["ErrorSummary"].endswith(
        "; last error: RuntimeError: injected fault at processing (DEV_FAULT_PLAN_DIR)"
    )
    assert messages[failing_write]["Status"] == statuses.POSTPROCESSING_FAILED
    assert messages[failing_write]["ErrorSummary"].startswith(
        f"the import was abandoned after 2 attempt(s): {ABANDONED}; "
    )
    assert partial in messages[failing_write]["ErrorSummary"]
    assert messages[failing_write]["ErrorSummary"].endswith(
        "; last error: RuntimeError: injected fault at processing (DEV_FAULT_PLAN_DIR)"
    )
    assert messages[in_order[0]]["Status"] == statuses.POSTPROCESSING_FAILED
    assert last in messages[in_order[0]]["ErrorSummary"]
    for message_id in in_order[1:]:
        assert messages[message_id]["Status"] == statuses.PROCESSED
        assert messages[message_id]["Counts"] == {
            ordered_entity: {"read": ROWS, "written": ROWS, "rejected": 0}
        }

    ended, poisoned = (services.run_repo().get_run(r) for r in export_runs)
    assert ended["Status"] == poisoned["Status"] == statuses.RUN_ERROR
    assert ended["Errors"] == [
        f"the export failed on its {last}, after 2 attempt(s); last error: RuntimeError: injected fault at "
        "export (DEV_FAULT_PLAN_DIR)"
    ]
    assert poisoned["Errors"] == [
        f"the export was abandoned after 2 attempt(s): {ABANDONED}; last error: RuntimeError: injected fault "
        "at export (DEV_FAULT_PLAN_DIR)"
    ]
    # Each fault fired exactly as often as the host delivered: two deliveries, one failed terminal write.
    assert world.fired() == Counter(
        {
            ("processing", failing, "raise"): 2,
            ("processing", failing_write, "raise"): 2,
            ("fail_write", failing_write, "raise"): 1,
            ("preprocessing", in_order[0], "raise"): 2,
            ("export", export_runs[0], "raise"): 2,
            ("export", export_runs[1], "raise"): 2,
            ("fail_write", export_runs[1], "raise"): 1,
        }
    )
    assert world.workers.kills == 0
    for each in (job, ordered, export_job):
        runs = _runs(services, each)
        assert all(r["Status"] in TERMINAL_RUN for r in runs), [
            (r["RunId"], r["Status"], r.get("Messages"), r.get("Errors")) for r in runs
        ]


def test_work_whose_worker_dies_on_every_delivery_is_poisoned_and_swept(world):
    """A worker that dies on the last allowed delivery writes nothing; the host poisons the item on the
    next receive without invoking it, and the sweeper ends the work. Also killed: the last delivery just
    before its own terminal write."""
    services = world.services
    job, principal, entity = _import_job(services)
    # One at a time, so that no kill interrupts the sweep of an item (it would stay hidden for a minute).
    killed_writing = _enqueue(services, job, principal, entity, "killed-writing")
    world.arm("processing", killed_writing, "raise")
    world.arm("fail_write", killed_writing, "kill", times=1)
    _dispatch(services, job, [killed_writing])
    world.workers.wait_for(lambda: _all_ended(services, [killed_writing]), "the message ended")

    killed = _enqueue(services, job, principal, entity, "killed")
    world.arm("processing", killed, "kill")
    _dispatch(services, job, [killed])
    world.workers.wait_for(lambda: _all_ended(services, [killed]), "the message ended")

    export_job = _export_job(services, entity)
    run_id = services.export_service().start(export_job, statuses.TRIGGER_MANUAL)
    world.arm("export", run_id, "kill")
    world.workers.wait_for(
        lambda: services.run_repo().get_run(run_id)["Status"] in TERMINAL_RUN, "the export run ended"
    )

    messages = _messages(services, [killed, killed_writing])
    assert messages[killed]["Status"] == statuses.POSTPROCESSING_FAILED
    assert messages[killed]["ErrorSummary"] == (
        f"the import was abandoned after 2 attempt(s): {ABANDONED}; no record was written; last error: {KILLED}"
    )
    assert messages[killed_writing]["Status"] == statuses.POSTPROCESSING_FAILED
    summary = messages[killed_writing]["ErrorSummary"]
    assert summary.startswith(f"the import was abandoned after 2 attempt(s): {ABANDONED}; ")
    assert "record(s) were written before it failed, so the import is partial" in summary
    assert summary.endswith("; last error: RuntimeError: injected fault at processing (DEV_FAULT_PLAN_DIR)")
    run = services.run_repo().get_run(run_id)
    assert run["Status"] == statuses.RUN_ERROR
    assert run["Errors"] == [
        f"the export was abandoned after 2 attempt(s): {ABANDONED}; last error: {KILLED}"
    ]
    # Two deliveries each, never a third: the host poisoned the items without invoking them again.
    assert world.fired() == Counter(
        {
            ("processing", killed, "kill"): 2,
            ("processing", killed_writing, "raise"): 2,
            ("fail_write", killed_writing, "kill"): 1,
            ("export", run_id, "kill"): 2,
        }
    )
    assert world.workers.kills == 5
    for each in (job, export_job):
        runs = _runs(services, each)
        assert all(r["Status"] in TERMINAL_RUN for r in runs), [
            (r["RunId"], r["Status"], r.get("Messages"), r.get("Errors")) for r in runs
        ]
