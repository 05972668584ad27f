"""The client is a package of its own: it builds as a wheel, installs into a fresh virtualenv, and its console
script runs; it declares exactly its three runtime dependencies and never imports the Function App."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "client"


def test_the_client_never_imports_the_function_app():
    allowed_roots = {"d365ri", "msal", "requests", "tqdm", "cryptography", "__future__"}
    stdlib = set(sys.stdlib_module_names)
    for path in (CLIENT / "src" / "d365ri").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                root = name.split(".")[0]
                assert root in allowed_roots or root in stdlib, f"{path.name} imports {name}"


def test_the_wheel_builds_installs_in_a_fresh_venv_and_its_console_script_runs(tmp_path):
    # pip builds in isolation, as a partner's `pip install ./client` does (it fetches the build backend,
    # setuptools, from the package index, then caches it). The runtime dependencies come from the test
    # venv's site-packages through a .pth file: they are what `pip install` would bring.
    wheels = tmp_path / "wheels"
    # A copy: pip builds in the source folder (build/, *.egg-info), which must not litter the checkout.
    source = tmp_path / "client"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(wheels),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    [wheel] = wheels.glob("d365ri-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = zf.read(
            next(n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt"))
        ).decode()
        assert not any(n.startswith("shared/") for n in zf.namelist())
    requires = sorted(
        line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")
    )
    assert requires == ["msal<2,>=1.28", "requests<3,>=2.31", "tqdm<5,>=4.66"]
    assert "Requires-Python: >=3.10" in metadata
    assert "d365ri = d365ri.cli:main" in entry_points

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / ("python.exe" if os.name == "nt" else "python")
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The runtime dependencies, and pip itself to install the wheel with.
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        capture_output=True,
        text=True,
    )
    script = bin_dir / ("d365ri.exe" if os.name == "nt" else "d365ri")
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",) and not k.startswith("D365RI_")}
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, env=clean, check=False)
    assert done.returncode == 0, done.stderr
    assert "send files" in done.stdout and "watch folders" in done.stdout
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, env=clean, check=False)
    assert done.returncode == 0 and done.stdout.startswith("d365ri ")
    # Installed from the wheel, not from the source tree.
    where = subprocess.run(
        [str(python), "-c", "import d365ri; print(d365ri.__file__)"],
        capture_output=True,
        text=True,
        env=clean,
        check=True,
    ).stdout
    assert str(env_dir) in where
