"""A non-editable `pip install .` ships the model presets and run configs as package data: from
another directory the installed `templar-jax` finds the `tiny` preset and the shipped run configs.

Offline: the fresh venv reuses this environment's installed dependencies through a .pth line
(`--no-deps --no-build-isolation --no-index`), and the source is copied first so the build
leaves no `build/` folder in the checkout.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _source_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.split("\n")
    return [f for f in out if f and (REPO / f).exists()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of a fresh venv holding a non-editable install, its bin folder)."""
    root = tmp_path_factory.mktemp("install")
    src = root / "src"
    for name in _source_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_symlink():
            os.symlink(os.readlink(REPO / name), src / name)
        else:
            shutil.copy2(REPO / name, src / name)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # This environment's dependencies, but not its editable templar_jax (a .pth inside a path
    # added by a .pth is not processed, so the editable finder stays out).
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", str(src)], check=True, cwd=root)
    return python, venv / "bin"


def _run(installed, tmp_path, *args) -> str:
    python, bindir = installed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run([str(bindir / "templar-jax"), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_non_editable_install_finds_presets_and_run_configs(installed, tmp_path):
    python, _ = installed
    where = subprocess.run([str(python), "-c", "import templar_jax.package_data as p; print(p.CONFIGS_DIR)"],
                           cwd=tmp_path, check=True, capture_output=True, text=True).stdout.strip()
    assert not where.startswith(str(REPO)) and "site-packages" in where  # the installed copy
    plan = json.loads(_run(installed, tmp_path, "plan", "--model", "tiny", "--json"))
    assert plan["param_count"] == 918144 and plan["fits"]
    size = _run(installed, tmp_path, "payload", "size", "--model", "tiny")
    assert "elias-fano" in size and "918,144" in size
    shown = _run(installed, tmp_path, "config", "show", "covenant-72b", "--set", "inner.steps=3")
    assert "preset: covenant-72b" in shown and "  steps: 3" in shown
