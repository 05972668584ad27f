"""Start the repository's pinned Azurite so local runs and tests get a storage emulator with one call.

Azurite comes from ``node_modules`` (``npm ci``), is always started with ``--disableTelemetry
--skipApiVersionCheck``, and listens on free ports unless told otherwise, so several test
sessions (and a developer's own Azurite) can run side by side.

    python -m tools.azurite [--location DIR] [--in-memory] [--ports 10000 10001 10002]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO_ROOT / "node_modules" / ".bin" / "azurite"
DEFAULT_PORTS: tuple[int, int, int] = (10000, 10001, 10002)
DEFAULT_LOCATION = REPO_ROOT / ".azurite"

# The well-known development storage account: public, identical in every Azurite and emulator.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
HOST = "127.0.0.1"

_LISTENING = re.compile(
    r"Azurite (Blob|Queue|Table) service is successfully listening at https?://[^\s:]+:(\d+)"
)


class AzuriteError(RuntimeError):
    """Azurite could not be found or did not become ready."""


class AzuriteProcess:
    """A running Azurite: its ports, a connection string for them, and a way to stop it."""

    def __init__(self, process: subprocess.Popen[str], log_file: IO[str] | None) -> None:
        self.process = process
        self.blob_port = 0
        self.queue_port = 0
        self.table_port = 0
        self._log_file = log_file
        self._output: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read_output, name="azurite-output", daemon=True)
        self._reader.start()
        # A crashed test session or an exception before stop() must not leave Azurite behind.
        atexit.register(self.stop)

    # --- endpoints --------------------------------------------------------------------------------
    @property
    def blob_endpoint(self) -> str:
        return f"http://{HOST}:{self.blob_port}/{ACCOUNT_NAME}"

    @property
    def queue_endpoint(self) -> str:
        return f"http://{HOST}:{self.queue_port}/{ACCOUNT_NAME}"

    @property
    def table_endpoint(self) -> str:
        return f"http://{HOST}:{self.table_port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        # Explicit endpoints rather than UseDevelopmentStorage=true, which assumes ports 10000-10002.
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};QueueEndpoint={self.queue_endpoint};"
            f"TableEndpoint={self.table_endpoint};"
        )

    @property
    def output(self) -> str:
        """Everything Azurite printed so far (for error messages)."""
        return "".join(self._output)

    # --- lifecycle --------------------------------------------------------------------------------
    def _read_output(self) -> None:
        # Drain stdout continuously: a full pipe would block Azurite.
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._output.append(line)
            if self._log_file is not None:
                self._log_file.write(line)
                self._log_file.flush()
            match = _LISTENING.search(line)
            if match:
                setattr(self, f"{match.group(1).lower()}_port", int(match.group(2)))
                if self.blob_port and self.queue_port and self.table_port:
                    self._ready.set()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.process.poll() is not None:
                self._reader.join(1)
                raise AzuriteError(f"Azurite exited with code {self.process.returncode}:\n{self.output}")
            if time.monotonic() > deadline:
                self.stop()
                raise AzuriteError(f"Azurite was not ready after {timeout:.0f}s:\n{self.output}")

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate Azurite's process group and wait for it; safe to call twice."""
        atexit.unregister(self.stop)
        if self.process.poll() is None:
            # Azurite runs under node through a shell shim: signal the whole group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
        self._reader.join(2)
        if self._log_file is not None and not self._log_file.closed:
            self._log_file.close()

    def __enter__(self) -> AzuriteProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def start_azurite(
    *,
    location: str | os.PathLike[str] | None = None,
    in_memory: bool = True,
    ports: tuple[int, int, int] | None = None,
    log_path: str | os.PathLike[str] | None = None,
    timeout: float = 30.0,
) -> AzuriteProcess:
    """Start Azurite and return once all three services listen.

    ``location`` stores data on disk there; otherwise data is kept in memory, or in ``.azurite/``
    when ``in_memory`` is false. ``ports`` defaults to free ports (0); a requested port that is
    already taken (typically another Azurite on 10000-10002) falls back to a free one.
    """
    if not AZURITE_BIN.exists():
        raise AzuriteError(
            f"Azurite is not installed ({AZURITE_BIN} is missing): run `npm ci` in {REPO_ROOT}"
        )

    wanted = ports or (0, 0, 0)
    actual: list[int] = []
    for port in wanted:
        if port and not _port_is_free(port):
            print(f"azurite: port {port} is taken, using a free port instead", file=sys.stderr)
            port = 0
        actual.append(port)
    blob, queue, table = actual

    args = [
        str(AZURITE_BIN),
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--blobHost", HOST, "--blobPort", str(blob),
        "--queueHost", HOST, "--queuePort", str(queue),
        "--tableHost", HOST, "--tablePort", str(table),
    ]  # fmt: skip
    if location is None and not in_memory:
        location = DEFAULT_LOCATION
    if location is not None:
        data_dir = Path(location).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        args += ["--location", str(data_dir)]
        cwd = data_dir
    else:
        args.append("--inMemoryPersistence")
        cwd = REPO_ROOT

    log_file = open(log_path, "a", encoding="utf-8") if log_path is not None else None  # noqa: SIM115
    process = subprocess.Popen(
        args,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        # Own process group, so stop() reaches node behind the shim and Ctrl-C in a terminal
        # is handled by whoever started us (who then calls stop()).
        start_new_session=True,
    )
    azurite = AzuriteProcess(process, log_file)
    azurite.wait_ready(timeout)
    return azurite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.azurite", description=__doc__.splitlines()[0])
    parser.add_argument("--location", help=f"data directory (default {DEFAULT_LOCATION})")
    parser.add_argument("--in-memory", action="store_true", help="keep data in memory only")
    parser.add_argument(
        "--ports", type=int, nargs=3, metavar=("BLOB", "QUEUE", "TABLE"), default=list(DEFAULT_PORTS)
    )
    args = parser.parse_args(argv)

    location = None if args.in_memory else (args.location or DEFAULT_LOCATION)
    try:
        azurite = start_azurite(location=location, in_memory=args.in_memory, ports=tuple(args.ports))
    except AzuriteError as error:
        print(error, file=sys.stderr)
        return 1
    where = "in memory" if location is None else str(Path(location).resolve())
    print(
        f"Azurite ready ({where}); blob {azurite.blob_port}, queue {azurite.queue_port}, table {azurite.table_port}"
    )
    print(f"AzureWebJobsStorage={azurite.connection_string}", flush=True)

    stop = threading.Event()
    # Explicit handlers: a shell starting us in the background would otherwise leave SIGINT ignored.
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.5):
        if azurite.process.poll() is not None:
            print(f"Azurite exited unexpectedly:\n{azurite.output}", file=sys.stderr)
            return 1
    azurite.stop()
    print("Azurite stopped.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
