"""`make run`: Azurite on disk, the app under the local host, the demo configuration, and calls to paste.

    python -m tools.run_local [--port 7071] [--azurite-location .azurite] [--in-memory] [--no-demo]

1. starts the pinned Azurite with its data in ``.azurite/`` (ports 10000-10002, or free ones
   when those are taken);
2. starts ``python -m tools.devhost`` on port 7071 (or a free port when 7071 is taken) with
   ``AzureWebJobsStorage`` pointing at that Azurite, and waits for ``GET /`` to answer 200;
3. loads ``examples/config`` through the management API with an admin dev token (tools.demo);
4. prints ready-to-paste ``curl`` calls with fresh dev tokens (also written to
   ``.local/demo-calls.sh``) and a link to the workspace UI signed in as the demo admin, then
   streams the host's logs until Ctrl-C (SIGINT) or SIGTERM, and stops the host and Azurite.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tools import demo
from tools.azurite import DEFAULT_LOCATION, DEFAULT_PORTS, AzuriteError, start_azurite

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 7071
CALLS_FILE = REPO_ROOT / ".local" / "demo-calls.sh"
HOST_LOG = REPO_ROOT / ".local" / "devhost.log"
PR_SET_PDEATHSIG = 1


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _die_with_parent():
    """A preexec_fn: the host gets SIGTERM if this process dies without cleaning up (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class HostProcess:
    """``python -m tools.devhost`` in its own session, so that only we signal it (once) on Ctrl-C."""

    def __init__(self, port: int, env: dict[str, str]) -> None:
        self.started_at = time.monotonic()
        self.url = ""
        self._banner = threading.Event()
        # The host's logs (stderr) go to HOST_LOG, and to the terminal once the demo calls are printed,
        # so that the setup's request lines do not bury them.
        self.echo_logs = threading.Event()
        self._log_lines: list[str] = []
        HOST_LOG.parent.mkdir(parents=True, exist_ok=True)
        self._log = HOST_LOG.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tools.devhost", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
        self._readers = [
            threading.Thread(target=self._read_stdout, name="devhost-stdout", daemon=True),
            threading.Thread(target=self._read_stderr, name="devhost-stderr", daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not self.url and line.startswith("Host started: "):
                self.url = line.split(": ", 1)[1].strip()
                self._banner.set()
            sys.stdout.write(line)
            sys.stdout.flush()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._log.write(line)
            self._log.flush()
            if self.echo_logs.is_set():
                sys.stderr.write(line)
                sys.stderr.flush()
            else:
                self._log_lines = [*self._log_lines[-199:], line]

    def recent_logs(self) -> str:
        return "".join(self._log_lines[-40:])

    def _exited(self) -> RuntimeError:
        for reader in self._readers:
            reader.join(2)  # read the host's last words before reporting
        return RuntimeError(f"the local host exited with code {self.proc.returncode}")

    def wait_ready(self, stop: threading.Event, timeout: float = 60.0) -> float:
        """Wait for the banner, then for `GET /` to answer 200; returns seconds since the process started."""
        deadline = self.started_at + timeout
        while not self._banner.wait(0.05):
            if stop.is_set():
                raise RuntimeError("interrupted")
            if self.proc.poll() is not None:
                raise self._exited()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the local host did not start within {timeout:.0f}s")
        while not stop.is_set():
            try:
                status, _ = demo.http("GET", self.url + "/", timeout=5)
                if status == 200:
                    return time.monotonic() - self.started_at
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise self._exited()
            if time.monotonic() > deadline:
                raise RuntimeError(f"GET {self.url}/ did not answer 200 within {timeout:.0f}s")
            time.sleep(0.05)
        raise RuntimeError("interrupted")

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc.poll() is None:
            # The host's SIGINT handler drains running invocations; a second signal would force it.
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        for reader in self._readers:
            reader.join(2)
        self._log.close()
        return self.proc.returncode


def workspace_link(base_url: str, admin_token: str) -> str:
    """The workspace UI signed in with a dev admin token (AUTH_MODE=local only). The token rides in the URL
    fragment: browsers never send a fragment to the server, so it reaches no request line or log, and the
    UI moves it to sessionStorage and out of the address bar (workspace/js/auth.js)."""
    return f"{base_url.rstrip('/')}/workspace/#token={admin_token}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.run_local", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="HTTP port (default 7071; a free one if taken)"
    )
    parser.add_argument(
        "--azurite-location", type=Path, default=DEFAULT_LOCATION, help="Azurite data directory"
    )
    parser.add_argument("--in-memory", action="store_true", help="keep Azurite's data in memory only")
    parser.add_argument("--no-demo", action="store_true", help="do not load the demo configuration")
    parser.add_argument(
        "--token-minutes", type=int, default=480, help="lifetime of the printed dev tokens (default 8 h)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base_env = dict(os.environ)  # before settings files are applied here (tools.demo does that)

    stop = threading.Event()
    signals: list[str] = []

    def on_signal(signum, frame) -> None:
        signals.append(signal.Signals(signum).name)
        stop.set()

    # Explicit handlers: started in the background by a shell, SIGINT would otherwise be ignored.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    azurite = None
    host: HostProcess | None = None
    code = 0
    try:
        where = "in memory" if args.in_memory else str(args.azurite_location)
        print(f"Starting Azurite ({where})...", flush=True)
        location = None if args.in_memory else args.azurite_location
        log_path = None if args.in_memory else Path(args.azurite_location) / "azurite.log"
        azurite = start_azurite(
            location=location, in_memory=args.in_memory, ports=DEFAULT_PORTS, log_path=log_path
        )
        print(
            f"Azurite ready: blob {azurite.blob_port}, queue {azurite.queue_port}, table {azurite.table_port}",
            flush=True,
        )

        port = args.port
        if port and not port_is_free(port):
            print(f"Port {port} is taken; the host will listen on a free port instead.", flush=True)
            port = 0
        env = {**base_env, "AzureWebJobsStorage": azurite.connection_string, "PYTHONUNBUFFERED": "1"}
        host = HostProcess(port, env)
        elapsed = host.wait_ready(stop)
        print(
            f"\nHost ready at {host.url} ({elapsed:.1f}s from start to the first 200 on GET /).", flush=True
        )

        if not args.no_demo:
            from shared import settings

            token_minutes = args.token_minutes
            admin_token = demo.dev_token(demo.ADMIN_APP_ID, admin=True, minutes=token_minutes)
            if settings.auth_mode() != "local":
                print(f"AUTH_MODE is {settings.auth_mode()!r}, not 'local': dev tokens do not work; no demo.")
            else:
                print(f"\nLoading the demo configuration ({demo.CONFIG_DIR.relative_to(REPO_ROOT)}):")
                result = demo.load_config(host.url, admin_token, demo.CONFIG_DIR)
                export_job = demo.EXPORT_JOB_ID if demo.EXPORT_JOB_ID in result.jobs else None
                if export_job and not demo.route_exists(
                    host.url, "GET", f"/api/connector/dequeue/{export_job}"
                ):
                    print("  (this build has no dequeue endpoint yet: the export calls are left out)")
                    export_job = None
                calls = demo.curl_calls(
                    host.url,
                    demo.dev_token(demo.DEMO_APP_ID, minutes=token_minutes),
                    admin_token,
                    export_job=export_job,
                    token_minutes=token_minutes,
                )
                CALLS_FILE.parent.mkdir(parents=True, exist_ok=True)
                CALLS_FILE.write_text("#!/usr/bin/env bash\n" + calls, encoding="utf-8")
                rule = "-" * 100
                print(f"\nReady. Paste these into a shell (also in {CALLS_FILE.relative_to(REPO_ROOT)}):")
                print(rule)
                print(calls, end="")
                print(rule)
                print("More tokens: .venv/bin/python -m tools.devtoken --app-id <guid> [--admin]")
                print(
                    f"\nWorkspace (signed in as the demo admin; the token is in the URL fragment, which the "
                    f"browser never sends):\n  {workspace_link(host.url, admin_token)}"
                )
        print(
            f"Press Ctrl-C to stop. The host's logs follow (all of them: {HOST_LOG.relative_to(REPO_ROOT)}).\n",
            flush=True,
        )
        host.echo_logs.set()

        while not stop.wait(0.5):
            if host.proc.poll() is not None:
                print(f"The local host exited with code {host.proc.returncode}.", file=sys.stderr)
                code = 1
                break
            if azurite.process.poll() is not None:
                print(f"Azurite exited unexpectedly:\n{azurite.output[-2000:]}", file=sys.stderr)
                code = 1
                break
    except (AzuriteError, RuntimeError, demo.DemoLoadError, OSError) as error:
        if not stop.is_set():
            if host is not None and not host.echo_logs.is_set() and host.recent_logs():
                print(f"The host's last log lines:\n{host.recent_logs()}", file=sys.stderr)
            print(f"make run: {error}", file=sys.stderr)
            if isinstance(error, demo.DemoLoadError):
                print("(start without the demo: make run RUN_ARGS=--no-demo)", file=sys.stderr)
            code = 1
    finally:
        if signals:
            print(f"\n{signals[0]}: stopping...", file=sys.stderr, flush=True)
        if host is not None:
            host.stop()
        if azurite is not None:
            azurite.stop()
        print("Stopped the local host and Azurite.", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
