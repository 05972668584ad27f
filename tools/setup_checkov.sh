#!/usr/bin/env bash
# Create (idempotently) the .venv-checkov virtualenv used by tests/infra to run checkov.
#
# checkov pins its own, older pycep-parser, so it cannot share the main .venv (which has a newer
# pycep-parser for the Bicep parse tests). Run from anywhere; the venv is created at the repository
# root. Re-running is cheap: it exits early when checkov is already installed at the pinned range.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CHECKOV_VENV:-$ROOT/.venv-checkov}"
SPEC="${CHECKOV_SPEC:-checkov>=3.2,<4}"
PYTHON="${PYTHON:-python3}"

# Parallel test workers may call this at the same time on a fresh clone: one installs, the
# others wait and then find checkov installed.
if command -v flock >/dev/null 2>&1; then
    LOCK="${TMPDIR:-/tmp}/setup_checkov-$(id -u)-$(printf '%s' "$VENV" | cksum | cut -d' ' -f1).lock"
    exec 9>"$LOCK"
    flock 9
fi

if [[ -x "$VENV/bin/checkov" ]] && "$VENV/bin/python" - "$SPEC" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
from packaging.requirements import Requirement

req = Requirement(sys.argv[1])
sys.exit(0 if req.specifier.contains(version(req.name), prereleases=True) else 1)
PY
    [[ -f "$VENV/.gitignore" ]] || printf '# created by tools/setup_checkov.sh\n*\n' > "$VENV/.gitignore"
    echo "checkov $("$VENV/bin/checkov" --version) already installed in $VENV"
    exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
# Never commit the virtualenv (as Python 3.13's venv does by itself).
printf '# created by tools/setup_checkov.sh\n*\n' > "$VENV/.gitignore"

"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$SPEC"
echo "checkov $("$VENV/bin/checkov" --version) installed in $VENV"
