r"""A TCP proxy that injects storage faults: connection resets and stalled responses, on a seeded schedule.

Fault tests put one in front of each Azurite service (blob, queue, table), so the app meets the transient
faults real Azure Storage has (a reset inside `submit_transaction`, a response that never comes) through
its real SDK clients and sockets, not through mocks.

    python -m tools.faultproxy --target 127.0.0.1:10002 [--port 0] [--reset-rate 0.02]
        [--stall-rate 0.01] [--stall-seconds 30] [--seed 1] [--control FILE] [--stats FILE]

Faults are decided per HTTP request (a client chunk that starts with a request line), from a seeded random
generator:
- **reset before**: the request is never forwarded; the client's connection is reset (RST);
- **reset after**: the request reaches the server, which acts on it, but its response is dropped and the
  client's connection is reset: the case that makes a non-idempotent retry dangerous;
- **stall**: the response is held for ``--stall-seconds`` before it is forwarded.

``--control FILE`` is a JSON object ``{"reset_rate": …, "stall_rate": …, "stall_seconds": …}`` re-read when it
changes, so a test can turn faults on and off while it runs. It may also hold ``"reset_after": {"pattern": REGEX,
"count": N}``: the next N requests whose request line matches REGEX (for example ``^(MERGE|PATCH) /\S*/runs\(``)
are reset after the server acted, whatever the rates say: a fault at one chosen call, for a deterministic test.
``--stats FILE`` receives
``{"requests", "resets_before", "resets_after", "stalls"}`` as they change. The first line on stdout is
``Fault proxy listening on 127.0.0.1:<port> -> <target>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import struct
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

_REQUEST_LINE = re.compile(rb"^(GET|PUT|POST|DELETE|HEAD|MERGE|PATCH|OPTIONS) \S+ HTTP/1\.[01]\r\n")
_CHUNK = 64 * 1024


@dataclass
class Rates:
    reset_rate: float = 0.0
    stall_rate: float = 0.0
    stall_seconds: float = 30.0


@dataclass
class Targeted:
    """Reset after the server acted, for the next `count` requests whose request line matches `pattern`."""

    pattern: re.Pattern[bytes]
    count: int


@dataclass
class Stats:
    requests: int = 0
    resets_before: int = 0
    resets_after: int = 0
    stalls: int = 0


@dataclass
class Proxy:
    target_host: str
    target_port: int
    rates: Rates
    seed: int
    control: Path | None = None
    stats_path: Path | None = None
    stats: Stats = field(default_factory=Stats)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._control_mtime: float | None = None
        self._targeted: Targeted | None = None

    # --- schedule -------------------------------------------------------------------------------
    def _reload_control(self) -> None:
        if self.control is None:
            return
        try:
            mtime = self.control.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self._control_mtime:
            return
        try:
            data = json.loads(self.control.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # half-written; read again next time
        self._control_mtime = mtime
        self.rates = Rates(
            reset_rate=float(data.get("reset_rate", self.rates.reset_rate)),
            stall_rate=float(data.get("stall_rate", self.rates.stall_rate)),
            stall_seconds=float(data.get("stall_seconds", self.rates.stall_seconds)),
        )
        targeted = data.get("reset_after")
        self._targeted = (
            Targeted(re.compile(targeted["pattern"].encode()), int(targeted.get("count", 1)))
            if targeted
            else None
        )

    def decide(self, request_line: bytes = b"") -> str | None:
        """The fault for the next request: "reset-before", "reset-after", "stall" or None."""
        self._reload_control()
        self.stats.requests += 1
        targeted = self._targeted
        if targeted is not None and targeted.count > 0 and targeted.pattern.search(request_line):
            targeted.count -= 1
            self.stats.resets_after += 1
            self.write_stats()
            return "reset-after"
        roll = self._random.random()
        if roll < self.rates.reset_rate:
            fault = "reset-before" if self._random.random() < 0.5 else "reset-after"
        elif roll < self.rates.reset_rate + self.rates.stall_rate:
            fault = "stall"
        else:
            self.write_stats()
            return None
        if fault == "reset-before":
            self.stats.resets_before += 1
        elif fault == "reset-after":
            self.stats.resets_after += 1
        else:
            self.stats.stalls += 1
        self.write_stats()
        return fault

    def write_stats(self) -> None:
        if self.stats_path is None:
            return
        tmp = self.stats_path.with_suffix(".tmp")
        with contextlib.suppress(OSError):  # the folder may be gone at shutdown
            tmp.write_text(json.dumps(asdict(self.stats)), encoding="utf-8")
            os.replace(tmp, self.stats_path)

    # --- forwarding -----------------------------------------------------------------------------
    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # shutdown
            await self._forward(client_reader, client_writer)

    async def _forward(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            _reset(client_writer)
            return
        # What to do with the response of the request in flight (one at a time on an HTTP/1.1 connection).
        pending: list[str | None] = []

        async def upstream() -> None:
            while data := await client_reader.read(_CHUNK):
                if _REQUEST_LINE.match(data):
                    fault = self.decide(data.split(b"\r\n", 1)[0])
                    if fault == "reset-before":
                        raise ConnectionResetError("injected reset before the request")
                    pending.append(fault)
                server_writer.write(data)
                await server_writer.drain()
            with contextlib.suppress(OSError):
                server_writer.write_eof()

        async def downstream() -> None:
            while data := await server_reader.read(_CHUNK):
                # A status line starts the response to the oldest request in flight; later chunks of a
                # response pass as they come.
                fault = pending.pop(0) if pending and data.startswith(b"HTTP/1.") else None
                if fault == "reset-after":
                    raise ConnectionResetError("injected reset after the request")
                if fault == "stall":
                    await asyncio.sleep(self.rates.stall_seconds)
                client_writer.write(data)
                await client_writer.drain()

        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        try:
            # Either side closing ends the connection: a server that closed an idle keep-alive connection
            # must close the client's too, or the client's next request on it waits for a reply forever.
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            failed = any(t.exception() for t in done if not t.cancelled())
        finally:
            for task in tasks:
                task.cancel()
        if failed:
            _reset(client_writer)
            _reset(server_writer)
        else:
            for writer in (client_writer, server_writer):
                with contextlib.suppress(OSError):
                    writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), as a dropped connection looks to the SDK."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        writer.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.faultproxy", description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    parser.add_argument("--reset-rate", type=float, default=0.0, help="share of requests reset (0..1)")
    parser.add_argument("--stall-rate", type=float, default=0.0, help="share of responses stalled (0..1)")
    parser.add_argument("--stall-seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--control", type=Path, help="JSON file with rates, re-read when it changes")
    parser.add_argument("--stats", type=Path, help="JSON file that receives the fault counts")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    host, _, port = args.target.rpartition(":")
    proxy = Proxy(
        host,
        int(port),
        Rates(args.reset_rate, args.stall_rate, args.stall_seconds),
        args.seed,
        control=args.control,
        stats_path=args.stats,
    )
    proxy.write_stats()
    server = await asyncio.start_server(proxy.handle, args.host, args.port)
    bound = server.sockets[0].getsockname()[1]
    print(f"Fault proxy listening on {args.host}:{bound} -> {args.target}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    proxy.write_stats()


def main(argv: list[str] | None = None) -> int:
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
