"""Run `python -m tools.devhost` as a subprocess for tests, and wait for its startup banner."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_APP = Path(__file__).resolve().parent / "sample_app"
_BANNER = re.compile(r"^Host started: (http://\S+)$", re.MULTILINE)
_GENERATED_KEY = re.compile(r"^Master key: (\S+) \(generated", re.MULTILINE)

# Settings the sample app and the host read; cleared so the developer's shell cannot change test outcomes.
_SAMPLE_KEYS = ("SAMPLE_", "AzureWebJobs", "FUNCTIONS_", "DEVHOST_")


def clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SAMPLE_KEYS)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


class HostProcess:
    """A devhost subprocess with its stdout and stderr captured to files."""

    def __init__(
        self, root: Path, env: dict[str, str], log_dir: Path, *extra_args: str, name: str = "host"
    ) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / f"{name}.out"
        self.stderr_path = log_dir / f"{name}.err"
        self.started_at = time.monotonic()
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tools.devhost", "--port", "0", "--root", str(root), *extra_args],
                cwd=REPO_ROOT,
                env=env,
                stdout=out,
                stderr=err,
            )
        self.url = ""

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def wait_started(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = _BANNER.search(self.stdout)
            if found:
                self.url = found.group(1)
                return self.url
            if self.proc.poll() is not None:
                raise AssertionError(f"devhost exited with {self.proc.returncode}:\n{self.stderr}")
            time.sleep(0.02)
        raise AssertionError(f"devhost did not start within {timeout}s:\n{self.stderr}")

    @property
    def master_key(self) -> str:
        """The master key the host generated at start (DEVHOST_MASTER_KEY unset), from its banner."""
        found = _GENERATED_KEY.search(self.stdout)
        assert found, f"no generated master key in the banner:\n{self.stdout}"
        return found.group(1)

    @property
    def log(self) -> str:
        """Everything the host wrote: the banner (stdout), then its log and the functions' output (stderr)."""
        return self.stdout + self.stderr

    def count_log(self, pattern: str) -> int:
        """How many times the regex ``pattern`` occurs in the host's output so far."""
        return len(re.findall(pattern, self.log, re.MULTILINE))

    def wait_for_log(self, pattern: str, count: int = 1, timeout: float = 30.0) -> list[re.Match[str]]:
        """Wait until the regex ``pattern`` occurs ``count`` times in the host's output; the matches.

        For example ``wait_for_log(r"Executed 'Functions\\.tick' \\(Succeeded")`` waits for an invocation
        of ``tick`` to finish. AssertionError when the time is up or the host exits first.
        """
        compiled = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            found = list(compiled.finditer(self.log))
            if len(found) >= count:
                return found
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"devhost exited with {self.proc.returncode} before {count} x {pattern!r}:\n{self.stderr}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(found)} of {count} x {pattern!r} after {timeout}s; host log tail:\n{self.stderr[-4000:]}"
                )
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode
