"""The real D365 fixtures folder, for the format tests (skipped cleanly when it is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
D365_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "d365"


@pytest.fixture
def d365() -> Path:
    """The folder of real D365 files (read-only, outside the repo); skips when it is absent."""
    if not D365_FIXTURES.is_dir():
        pytest.skip(f"the real D365 fixtures are not available at {D365_FIXTURES}")
    return D365_FIXTURES
