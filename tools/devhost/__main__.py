"""Command line for the local host: start the app, print where it listens, run until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from types import FrameType

from .app_loader import AppLoadError
from .host import DevHost
from .queue_runner import DEFAULT_LEASE_SECONDS
from .routes import RouteError
from .settings import MASTER_KEY_SETTING, SettingsError, local_http_port

DEFAULT_PORT = 7071  # the port `func start` uses


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.devhost",
        description="Run a Python v2 FunctionApp locally with HTTP, queue (Azurite) and timer triggers.",
    )
    parser.add_argument(
        "--port",
        type=int,
        help=f"HTTP port; 0 picks a free one (default: Host.LocalHttpPort in local.settings.json, else {DEFAULT_PORT})",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--app", default="function_app", help="module[:attribute] holding the FunctionApp")
    parser.add_argument(
        "--root", default=".", help="app root: put on sys.path; holds host.json and local.settings.json"
    )
    parser.add_argument(
        "--functions",
        nargs="+",
        metavar="NAME",
        help="run only these functions; the groups http, queues and timers select by trigger and mix with names "
        "(e.g. two processes, --functions http and --functions queues timers, split the app as Flex does)",
    )
    parser.add_argument(
        "--queue-lease",
        type=float,
        default=DEFAULT_LEASE_SECONDS,
        metavar="SECONDS",
        help="how long a received queue message stays hidden (the host: 600 s, renewed at half-time)",
    )
    parser.add_argument(
        "--grace", type=float, default=5.0, help="seconds to let invocations finish on shutdown"
    )
    return parser.parse_args(argv)


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The Azure SDKs log every HTTP call at INFO, which would drown the functions' own logs.
    for noisy in ("azure", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    root = Path(args.root).resolve()
    port = args.port if args.port is not None else (local_http_port(root) or DEFAULT_PORT)
    host = DevHost(
        root,
        args.app,
        port,
        args.host,
        functions=args.functions,
        queue_lease_seconds=args.queue_lease,
        shutdown_grace=args.grace,
    )

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            print("Forced exit.", file=sys.stderr, flush=True)
            os._exit(130)
        print(f"{signal.Signals(signum).name}: shutting down...", file=sys.stderr, flush=True)
        stop.set()

    # Installed before start so a signal during a slow import still shuts down cleanly.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    try:
        bound = host.start()
    except (AppLoadError, SettingsError, RouteError) as error:
        print(f"Host failed to start: {error}", file=sys.stderr, flush=True)
        host.stop()
        return 1
    except OSError as error:
        print(
            f"Host failed to listen on {args.host}:{port}: {error} (try --port 0)",
            file=sys.stderr,
            flush=True,
        )
        host.stop()
        return 1
    except Exception:
        print(f"Host failed to load {args.app}:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        host.stop()
        return 1

    lines = [f"Host started: {host.url}"]
    if host.http_settings.master_key_generated:
        # The real host keeps its master key in its secrets store; locally it comes from an app setting.
        lines.append(
            f"Master key: {host.http_settings.master_key} (generated; set {MASTER_KEY_SETTING} to choose one)"
        )
    else:
        lines.append(f"Master key: from {MASTER_KEY_SETTING}")
    if host.overridden_settings:
        lines.append(f"Settings from the environment: {', '.join(sorted(host.overridden_settings))}")
    if args.functions:
        lines.append(f"Running only: {' '.join(args.functions)} (--functions)")
    lines.append("Functions:")
    lines += [f"  {line}" for line in host.describe()]
    print("\n".join(lines), flush=True)
    assert bound == host.port

    while not stop.wait(0.5):
        pass
    clean = host.stop()
    print("Host stopped.", file=sys.stderr, flush=True)
    if not clean:
        # Abandoned invocations run on non-daemon pool threads, which would block interpreter exit.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
