"""Start `python -m tools.faultproxy` in front of an Azurite service, and steer it while a test runs."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


class FaultProxy:
    """A fault proxy process; `set(reset_rate=…, stall_rate=…, stall_seconds=…)` changes its rates at once."""

    def __init__(self, target_port: int, tmp: Path, *, seed: int = 7, **rates: float) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.control = tmp / "control.json"
        self.stats_path = tmp / "stats.json"
        self.control.write_text(json.dumps(rates))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tools.faultproxy",
                "--target",
                f"127.0.0.1:{target_port}",
                "--seed",
                str(seed),
                "--control",
                str(self.control),
                "--stats",
                str(self.stats_path),
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        assert line.startswith("Fault proxy listening on"), line
        self.port = int(line.split()[4].rsplit(":", 1)[1])

    def set(self, **rates: float) -> None:
        time.sleep(0.01)  # a new mtime
        self.control.write_text(json.dumps(rates))

    @contextlib.contextmanager
    def reset_after(self, pattern: str, count: int = 1) -> Iterator[None]:
        """While the block runs, reset the connection after the server acted on the next `count` requests whose
        request line matches the regex `pattern` (and no other fault); then no fault at all. Fails when fewer
        than `count` resets were injected (the pattern did not match what the app sent)."""
        before = self.stats()["resets_after"]
        time.sleep(0.01)  # a new mtime
        self.control.write_text(json.dumps({"reset_after": {"pattern": pattern, "count": count}}))
        try:
            yield
        finally:
            self.set(reset_rate=0, stall_rate=0)
        assert self.stats()["resets_after"] == before + count, f"no reset was injected for {pattern!r}"

    def stats(self) -> dict:
        return json.loads(self.stats_path.read_text())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def proxied_connection_string(azurite, proxies: dict[str, FaultProxy]) -> str:
    """The Azurite connection string with each service's port replaced by its proxy's."""
    conn = azurite.connection_string
    for service, proxy in proxies.items():
        port = getattr(azurite, f"{service}_port")
        conn = conn.replace(f":{port}/", f":{proxy.port}/")
    return conn
