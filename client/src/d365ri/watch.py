"""Watch mode: the scheduler partners run RIS for, as one process that is safe under cron or as a service.

Each pass:
1. **Monitor**: every file sent earlier is asked for its status; a terminal one is moved from the input folder
   to the success folder (Processed) or the error folder (anything else, with `<name>.status.json` beside it:
   status, errors and rejected records).
2. **Send**: files of the input folder, oldest first by name (or by modification time), are sent one at a
   time. A file is only picked once it has not changed for `settle` seconds; hidden and temporary names
   (.*, ~*, *.tmp, *.part, *.partial, *.crdownload) are skipped. A file the server refuses for good (a 4xx
   such as an unknown entity or an empty file) goes to the error folder with the reason; a network or
   sign-in problem ends the pass, and the same file is tried first next time, so the order holds.
3. **Receive**: the export job is dequeued into the output folder until 204 (ops.dequeue_all).

Restart safety, from the state file (JSON, written atomically after every step):
- a file is recorded as `sending` (name, size, mtime, SHA-256, external ID) *before* it is sent; after a crash
  it is sent again with the same external ID and content, and the server answers the first message ID
  (enqueue's de-duplication) or refuses a second import of the same execution ID (package path);
- its message or execution ID is recorded as `sent`; the move to success/error is recorded as `finishing`
  with its destination before the file moves, so a crash in between is finished on restart;
- a received file is recorded (on disk, size) before its ack; a restart acks it, and a redelivery of a file
  already received is acked without writing it twice.
One process per state file: a second one exits at once (an OS lock, released if the process dies).
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from d365ri.api import EXECUTION_TERMINAL, MESSAGE_TERMINAL, OUTCOME, Api
from d365ri.config import JobRef
from d365ri.errors import ApiError, ClientError
from d365ri.files import exclusive_lock, free_name, move_file, sha256_file, write_text_atomic
from d365ri.ops import (
    SendOptions,
    dequeue_all,
    execution_report,
    fault_point,
    message_report,
    send_file,
)

STATE_VERSION = 1
_SKIP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp")
_KEEP_DOWNLOADS_SECONDS = 14 * 24 * 3600  # remember received files this long (redeliveries come within hours)


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class State:
    """The watch state file: {"version", "uploads": {name: entry}, "downloads": {correlationId: entry}}."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = {"version": STATE_VERSION, "uploads": {}, "downloads": {}}
        if path.exists():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ClientError(
                    f"the watch state file {path} cannot be read: {exc}",
                    hint="it is written atomically, so this is not a crash; restore it from a backup, or move it "
                    "away to start afresh (files already sent would then be sent again)",
                ) from None
            self.data.update(loaded)

    @property
    def uploads(self) -> dict:
        return self.data["uploads"]

    def save(self) -> None:
        write_text_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=True))

    def download(self, corr: str) -> dict | None:
        return self.data["downloads"].get(corr)

    def record_download(self, corr: str, reply: dict, file: str, size: int) -> None:
        self.data["downloads"][corr] = {
            "file": file,
            "size": size,
            "onDisk": True,
            "acked": False,
            "reply": reply,
            "at": time.time(),
        }
        self.save()

    def record_ack(self, corr: str) -> None:
        entry = self.data["downloads"].get(corr)
        if entry is not None:
            entry["acked"] = True
            entry.pop("reply", None)
            self.save()

    def prune(self) -> None:
        cutoff = time.time() - _KEEP_DOWNLOADS_SECONDS
        old = [k for k, v in self.data["downloads"].items() if v.get("acked") and v.get("at", 0) < cutoff]
        for key in old:
            del self.data["downloads"][key]


@dataclass
class WatchConfig:
    input_dir: Path | None = None
    success_dir: Path | None = None
    error_dir: Path | None = None
    job: JobRef | None = None
    send: SendOptions = field(default_factory=SendOptions)
    output_dir: Path | None = None
    export_job: JobRef | None = None
    state_file: Path | None = None
    order: str = "name"  # name or time
    settle: float = 2.0
    interval: float = 30.0
    max_enqueue_bytes: int = 100 * 1024 * 1024


class Watcher:
    def __init__(self, api: Api, cfg: WatchConfig, *, events=None, sleep=time.sleep) -> None:
        if cfg.input_dir is None and cfg.output_dir is None:
            raise ClientError("watch needs --input (with --job) or --output (with --export-job), or both")
        if cfg.input_dir is not None and cfg.job is None:
            raise ClientError("watch --input needs --job (the import job)")
        if cfg.output_dir is not None and cfg.export_job is None:
            raise ClientError("watch --output needs --export-job (the export job)")
        self.api = api
        self.cfg = cfg
        self.events = events or (lambda event: None)
        self.sleep = sleep
        self.stopping = False
        folder = cfg.input_dir or cfg.output_dir
        self.state = State(cfg.state_file or folder / ".d365ri-watch.json")
        if cfg.input_dir is not None:
            self.success_dir = cfg.success_dir or cfg.input_dir / "success"
            self.error_dir = cfg.error_dir or cfg.input_dir / "error"

    def emit(self, event: str, **fields) -> None:
        self.events({"event": event, "at": now_iso(), **fields})

    # The loop ------------------------------------------------------------------------------------------
    def run(self, *, once: bool = False, until_idle: bool = False) -> int:
        lock = self.state.path.with_name(self.state.path.name + ".lock")
        with exclusive_lock(lock):
            self._install_signals()
            self.emit("started", state=str(self.state.path))
            while not self.stopping:
                idle = False
                try:
                    idle = self.run_pass()
                except ClientError as exc:  # network or sign-in: try again next pass, nothing is lost
                    self.emit("pass-failed", error=str(exc))
                    if once:
                        return exc.exit_code
                if once or (until_idle and idle):
                    break
                self._sleep(self.cfg.interval)
            self.emit("stopped")
        return 0

    def _install_signals(self) -> None:
        def stop(signum, frame):  # finish the current step, save, exit
            self.stopping = True

        for name in ("SIGTERM", "SIGINT", "SIGBREAK"):
            sig = getattr(signal, name, None)
            if sig is not None:
                try:
                    signal.signal(sig, stop)
                except (ValueError, OSError):  # not the main thread
                    pass

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            self.sleep(min(0.5, max(0.0, end - time.monotonic())))

    def run_pass(self) -> bool:
        """One pass; True when nothing is waiting: no file in the input folder, none in flight, none to receive."""
        idle = True
        if self.cfg.input_dir is not None:
            self.cfg.input_dir.mkdir(parents=True, exist_ok=True)
            self.finish_pending()
            self.monitor()
            if self.stopping:
                return False
            self.send_new()
            self.monitor()
            idle = not self.uploads_in_flight() and not self.candidates(include_unsettled=True)
        if self.cfg.output_dir is not None and not self.stopping:
            received = self.receive()
            idle = idle and not received
        self.state.prune()
        self.state.save()
        return idle

    # Sending -------------------------------------------------------------------------------------------
    def uploads_in_flight(self) -> list[str]:
        return [
            n for n, e in self.state.uploads.items() if e.get("state") in ("sending", "sent", "finishing")
        ]

    def candidates(self, *, include_unsettled: bool = False) -> list[Path]:
        folder = self.cfg.input_dir
        assert folder is not None
        now = time.time()
        files: list[tuple[float, Path]] = []
        for path in folder.iterdir():
            name = path.name
            if (
                name.startswith((".", "~"))
                or name.lower().endswith(_SKIP_SUFFIXES)
                or name in self.state.uploads
            ):
                continue
            try:
                if not path.is_file():
                    continue
                mtime = path.stat().st_mtime
            except OSError:  # removed or renamed while we looked
                continue
            if not include_unsettled and now - mtime < self.cfg.settle:
                continue
            files.append((mtime, path))
        if self.cfg.order == "time":
            files.sort(key=lambda f: (f[0], f[1].name))
        else:
            files.sort(key=lambda f: f[1].name)
        return [p for _, p in files]

    def send_new(self) -> None:
        # Files recorded as `sending` first (a crash came between the record and the reply), then new ones.
        pending = [n for n, e in self.state.uploads.items() if e.get("state") == "sending"]
        for name in sorted(pending, key=lambda n: self.state.uploads[n].get("seq", 0)):
            if self.stopping:
                return
            self._send(name)
        for path in self.candidates():
            if self.stopping:
                return
            try:
                stat = path.stat()
                digest = sha256_file(path)
            except OSError:  # gone before it was recorded: nothing was sent, nothing to do
                continue
            self.state.uploads[path.name] = {
                "state": "sending",
                "size": stat.st_size,
                "mtime": stat.st_mtime,
                "sha256": digest,
                "externalId": self.cfg.send.external_id or path.name,
                "seq": time.time_ns(),
                "since": now_iso(),
            }
            self.state.save()
            self._send(path.name)

    def _send(self, name: str) -> None:
        entry = self.state.uploads[name]
        path = self.cfg.input_dir / name
        if not path.exists():  # removed by hand before it was sent: nothing to send, nothing lost
            del self.state.uploads[name]
            self.state.save()
            self.emit("vanished", file=name)
            return
        opts = SendOptions(**{**self.cfg.send.__dict__, "external_id": entry["externalId"]})
        try:
            result = send_file(
                self.api,
                self.cfg.job,
                path,
                opts,
                max_enqueue_bytes=self.cfg.max_enqueue_bytes,
                log=lambda text: self.emit("note", file=name, text=text),
            )
        except ApiError as exc:
            if exc.permanent and exc.status not in (401, 403):
                entry.update(state="finishing", status="Refused", reason=str(exc), code=exc.code)
                self._finish(
                    name, entry, ok=False, report={"status": "Refused", "error": str(exc), "code": exc.code}
                )
                return
            raise
        entry.update(
            state="sent",
            path=result["path"],
            messageId=result.get("messageId"),
            executionId=result.get("executionId"),
            sentAt=now_iso(),
        )
        self.state.save()
        self.emit(
            "sent", file=name, path=result["path"], id=result.get("messageId") or result.get("executionId")
        )

    # Monitoring ----------------------------------------------------------------------------------------
    def monitor(self) -> None:
        for name, entry in list(self.state.uploads.items()):
            if self.stopping or entry.get("state") != "sent":
                continue
            try:
                if entry.get("path") == "package":
                    status = self.api.execution_status(entry["executionId"])
                    terminal = status in EXECUTION_TERMINAL
                else:
                    status = self.api.message_status(entry["messageId"])
                    terminal = status in MESSAGE_TERMINAL
            except ApiError as exc:
                if exc.status != 404:
                    raise
                # The server no longer knows it (its retention ended while this watch was stopped): the
                # outcome cannot be learnt, so the file goes to error with the reason, never silently.
                entry.update(status="Unknown")
                self._finish(name, entry, ok=False, report={"status": "Unknown", "error": str(exc)})
                continue
            if status != entry.get("status"):
                entry["status"] = status
                self.emit("status", file=name, status=status)
            if not terminal:
                continue
            ok = OUTCOME.get(status) == "ok"
            report = {"status": status}
            if not ok:
                report = self._report(entry, status)
            entry.update(state="finishing")
            self._finish(name, entry, ok=ok, report=report)

    def _report(self, entry: dict, status: str) -> dict:
        try:
            if entry.get("path") == "package":
                return execution_report(self.api, entry["executionId"], status, entity=None, errors_dir=None)
            return message_report(
                self.api,
                entry["messageId"],
                status,
                job=self.cfg.job.activity_id,
                entity=self.cfg.send.entity or self.cfg.job.entity,
                errors_dir=None,
            )
        except ClientError as exc:  # the outcome is known; details are a courtesy
            return {"status": status, "detailsError": str(exc)}

    def _finish(self, name: str, entry: dict, *, ok: bool, report: dict) -> None:
        """Move the file to success or error, recording where before moving (finish_pending completes it)."""
        folder = self.success_dir if ok else self.error_dir
        folder.mkdir(parents=True, exist_ok=True)
        if not entry.get("dest"):
            tag = (entry.get("messageId") or entry.get("executionId") or "x")[:8]
            entry["dest"] = str(free_name(folder, name, tag))
            entry["report"] = (
                None
                if ok
                else {
                    **report,
                    "file": name,
                    "messageId": entry.get("messageId"),
                    "executionId": entry.get("executionId"),
                }
            )
        entry["state"] = "finishing"
        self.state.save()
        self._complete(name, entry)

    def finish_pending(self) -> None:
        for name, entry in list(self.state.uploads.items()):
            if entry.get("state") == "finishing" and entry.get("dest"):
                self._complete(name, entry)

    def _complete(self, name: str, entry: dict) -> None:
        source = self.cfg.input_dir / name
        dest = Path(entry["dest"])
        if entry.get("report"):
            report_path = dest.with_name(dest.name + ".status.json")
            write_text_atomic(report_path, json.dumps(entry["report"], indent=2))
        if source.exists():
            changed = source.stat().st_size != entry.get("size") or source.stat().st_mtime != entry.get(
                "mtime"
            )
            if changed:  # replaced while in flight: the new content is a new file; leave it to be sent
                self.emit("changed-in-flight", file=name)
            else:
                move_file(source, dest)
        fault_point("after-move")
        status = entry.get("status")
        del self.state.uploads[name]
        self.state.save()
        self.emit("done", file=name, status=status, outcome=OUTCOME.get(status or "", "failed"), to=str(dest))

    # Receiving -----------------------------------------------------------------------------------------
    def receive(self) -> int:
        """Ack files on disk whose ack was lost, then dequeue until 204; how many files came."""
        for corr, entry in list(self.state.data["downloads"].items()):
            if entry.get("acked") or not entry.get("reply"):
                continue
            if Path(entry["file"]).exists() and Path(entry["file"]).stat().st_size == entry["size"]:
                try:
                    self.api.ack(self.cfg.export_job.activity_id, entry["reply"])
                    self.emit("acked", correlationId=corr, file=entry["file"])
                except ApiError as exc:
                    if not exc.permanent:
                        raise
                    self.emit("ack-refused", correlationId=corr, error=str(exc))  # redelivered: comes again
                self.state.record_ack(corr)
            else:  # the file is gone: forget it, and the redelivery downloads it again
                del self.state.data["downloads"][corr]
                self.state.save()
        got = dequeue_all(
            self.api,
            self.cfg.export_job,
            self.cfg.output_dir,
            state=self.state,
            log=lambda text: self.emit("note", text=text),
        )
        for item in got:
            self.emit("received", **item)
        return len(got)
