"""One virtualenv per Bittensor SDK generation, for tests/test_chain_bittensor_sdk{10,11}.py.

bittensor 10.x and 11.x install the same top-level package, so they cannot share an
environment. Each venv lives in `.sdk-venvs/bt{10,11}` (git-ignored), holds only that SDK and
its dependencies, and sees this environment's packages (pytest, numpy, jax) through a .pth
line; the tests run from the repository root, so they import the checkout's templar_jax.

    python tests/bittensor_sdks.py          # create both (needs PyPI; ~10 s each, ~80 MB)
    python tests/bittensor_sdks.py 11       # only one

.ci/run creates them before the tests; without them the SDK tests skip and say how to create them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENVS = REPO / ".sdk-venvs"
REQUIREMENTS = {10: "bittensor>=10.5,<11", 11: "bittensor>=11,<12"}


def venv_python(generation: int) -> Path:
    return VENVS / f"bt{generation}" / "bin" / "python"


def installed_generation() -> int | None:
    """The SDK generation importable here (11.x has `SyncClient`), or None."""
    try:
        import bittensor
    except ImportError:
        return None
    return 11 if hasattr(bittensor, "SyncClient") else 10


def venv_ready(generation: int) -> bool:
    python = venv_python(generation)
    if not python.exists():
        return False
    probe = "import bittensor, sys; sys.exit(0 if hasattr(bittensor, 'SyncClient') == (%d == 11) else 1)"
    return subprocess.run([str(python), "-c", probe % generation], capture_output=True).returncode == 0


def create(generation: int) -> Path:
    root = VENVS / f"bt{generation}"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = venv_python(generation)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "main-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                    REQUIREMENTS[generation]], check=True)
    return python


def run_tests_in_venv(generation: int, test_file: str) -> subprocess.CompletedProcess:
    """Run `test_file` with the generation's venv (from the repo root, so it imports the checkout)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([str(venv_python(generation)), "-m", "pytest", "-q", "-p", "no:randomly",
                           "-p", "no:cacheprovider", test_file],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def check_file_in_venv(generation: int, test_file: str) -> None:
    """Rerun `test_file` in the generation's venv (skip without one); every test there but the
    one calling this must pass."""
    import pytest

    if not venv_ready(generation):
        pytest.skip(f"no bittensor {generation}.x venv: python tests/bittensor_sdks.py {generation}")
    done = run_tests_in_venv(generation, test_file)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "1 skipped" in summary, summary  # only the caller skips there


def gate(generation: int, test_file: str):
    """For a test file of one SDK generation: (is that generation installed here, the skip marker
    of the tests that need it, the test that reruns `test_file` in its venv when it is not)."""
    import pytest

    here = installed_generation() == generation
    needs = pytest.mark.skipif(not here, reason=f"bittensor {generation}.x is not installed here")

    @pytest.mark.skipif(here, reason="runs the file directly here")
    def test_in_venv():
        check_file_in_venv(generation, test_file)

    return here, needs, test_in_venv


if __name__ == "__main__":
    for gen in [int(a) for a in sys.argv[1:]] or sorted(REQUIREMENTS):
        if venv_ready(gen):
            print(f"bittensor {gen}.x venv ready: {venv_python(gen)}")
        else:
            print(f"creating the bittensor {gen}.x venv: {create(gen)}")
