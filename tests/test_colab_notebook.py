"""The Colab quickstart notebook runs top to bottom on CPU (nbclient, a real ipykernel).

It runs in a temporary working directory, so its `runs/quickstart/` never touches the repo's
`runs/`; the persistent XLA cache and the bundled corpus under ~/.cache/templar-jax are shared
on purpose (that is what keeps this test at a few minutes instead of compiling everything).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "colab" / "templar_jax_quickstart.ipynb"
CELL_TIMEOUT_S = 420  # the demo cell is the longest: ~2 min warm, plus compiling on a cold cache


def _kernel_env() -> dict[str, str]:
    """The test process's environment minus the 8 fake devices conftest asks for: the demo's
    neurons must run as they do for a user (one CPU device each), not sharded 8 ways."""
    env = dict(os.environ)
    flags = env.pop("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "").strip()
    if flags:
        env["XLA_FLAGS"] = flags
    return env


def _text_outputs(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif "data" in out and "text/plain" in out["data"]:
            parts.append(out["data"]["text/plain"])
    return "".join(parts)


def test_notebook_is_valid_and_has_an_install_cell():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    sources = [c.source for c in nb.cells if c.cell_type == "code"]
    assert "INSTALL CELL" in sources[0] and 'find_spec("templar_jax") is None' in sources[0]
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook unexecuted"


@pytest.mark.slow
def test_notebook_executes_on_cpu(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute(env=_kernel_env())  # raises CellExecutionError (with the traceback) on failure
    finally:
        nbformat.write(nb, tmp_path / "executed.ipynb")  # outputs and timings, for a look afterwards

    run_dir = tmp_path / "runs" / "quickstart"
    assert (run_dir / "report.md").is_file() and (run_dir / "final_checkpoint").is_dir()
    heldout = json.loads((run_dir / "eval.json").read_text())["heldout"]
    assert 0 < heldout["loss"] < 9 and heldout["bits_per_byte"] > 0
    assert (run_dir / "hf" / "config.json").is_file() and (run_dir / "hf" / "model.safetensors").is_file()
    texts = [_text_outputs(c) for c in nb.cells if c.cell_type == "code"]
    assert "nothing to do" in texts[0]
    assert any("held-out loss" in t and "bits per byte" in t for t in texts)
    images = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert images == 2  # the loss plot and the scores plot
    if any("transformers" in t and "templar-jax" in t for t in texts):
        assert any("loss on 8 held-out samples" in t for t in texts)
