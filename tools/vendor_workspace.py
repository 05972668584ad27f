"""Copy the workspace UI's browser libraries from node_modules (pinned in package-lock.json) to workspace/vendor/.

    python -m tools.vendor_workspace           # after changing a version in package.json and `npm install`
    python -m tools.vendor_workspace --check   # exit 1 when workspace/vendor/ differs from node_modules

The copies are committed (with each library's license and version), so the deployment package carries them
and the Function App needs no front-end build: `func publish`, `azd deploy` and zip deploys take the
`workspace/` folder as it is. tests/unit/test_workspace_vendor.py runs the check, so a version bump in
package.json without a refresh here fails the tests.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = REPO_ROOT / "node_modules"
VENDOR_DIR = REPO_ROOT / "workspace" / "vendor"

# npm package -> {file in the package: name in workspace/vendor}
FILES: dict[str, dict[str, str]] = {
    "@azure/msal-browser": {
        "lib/msal-browser.min.js": "msal-browser.min.js",
        # The page MSAL redirects back to (msal-browser v5 hands the code to the app from there).
        "lib/redirect-bridge/msal-redirect-bridge.min.js": "msal-redirect-bridge.min.js",
        "LICENSE": "LICENSE.msal-browser.txt",
    },
    "uplot": {
        "dist/uPlot.iife.min.js": "uPlot.iife.min.js",
        "dist/uPlot.min.css": "uPlot.min.css",
        "LICENSE": "LICENSE.uplot.txt",
    },
}
VERSIONS_FILE = "versions.json"


def expected_files(node_modules: Path = NODE_MODULES) -> dict[str, bytes]:
    """name in workspace/vendor -> bytes, from the installed packages. Raises FileNotFoundError."""
    out: dict[str, bytes] = {}
    versions: dict[str, str] = {}
    for package, files in FILES.items():
        root = node_modules / package
        versions[package] = json.loads((root / "package.json").read_text(encoding="utf-8"))["version"]
        for source, target in files.items():
            out[target] = (root / source).read_bytes()
    out[VERSIONS_FILE] = (json.dumps(versions, indent=2, sort_keys=True) + "\n").encode()
    return out


def differences(vendor_dir: Path = VENDOR_DIR, node_modules: Path = NODE_MODULES) -> list[str]:
    """What --check reports: files missing, stale or extra in workspace/vendor."""
    wanted = expected_files(node_modules)
    problems = []
    for name, data in sorted(wanted.items()):
        path = vendor_dir / name
        if not path.is_file():
            problems.append(f"missing: {path.relative_to(REPO_ROOT)}")
        elif path.read_bytes() != data:
            problems.append(f"differs from node_modules: {path.relative_to(REPO_ROOT)}")
    if vendor_dir.is_dir():
        for path in sorted(vendor_dir.iterdir()):
            if path.name not in wanted:
                problems.append(f"not from a pinned package: {path.relative_to(REPO_ROOT)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.vendor_workspace", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = parser.parse_args(argv)
    try:
        wanted = expected_files()
    except FileNotFoundError as error:
        print(f"{error.filename} is missing: run `npm ci` first", file=sys.stderr)
        return 2
    if args.check:
        problems = differences()
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("run: .venv/bin/python -m tools.vendor_workspace", file=sys.stderr)
        return 1 if problems else 0
    VENDOR_DIR.mkdir(parents=True, exist_ok=True)
    for path in VENDOR_DIR.iterdir():
        if path.name not in wanted:
            path.unlink()
    for name, data in sorted(wanted.items()):
        (VENDOR_DIR / name).write_bytes(data)
        print(f"workspace/vendor/{name} ({len(data):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
