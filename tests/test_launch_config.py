"""Run configs: shipped files load, carry the SPEC numbers, reject unknown keys; docs match schema."""

import re
from pathlib import Path

import pytest

from templar_jax.launch.run_config import (
    SCHEMA, RunConfigError, all_keys, apply_overrides, load_run_config, validate,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["covenant-72b", "1b", "tiny-local"])
def test_shipped_configs_load_and_name_existing_model_presets(name):
    cfg = load_run_config(name)
    assert (REPO / "configs" / "models" / f"{cfg['model']['preset']}.yaml").is_file()
    assert cfg["inner"]["batch"] % cfg["inner"]["micro_batch"] == 0
    assert cfg["inner"]["batch"] <= cfg["inner"]["target_batch"]


def test_covenant_config_carries_spec_hyperparameters():
    c = load_run_config("covenant-72b")
    assert c["run"]["blocks_per_window"] == 115 and c["run"]["null_rounds"] == 2
    assert c["inner"]["steps"] == 30
    assert c["inner"]["lr"] == pytest.approx(1.2e-4)
    assert c["inner"]["betas"] == [0.9, 0.95] and c["inner"]["eps"] == pytest.approx(1e-8)
    assert c["inner"]["weight_decay"] == pytest.approx(0.1)
    assert (c["inner"]["warmup_steps"], c["inner"]["cosine_steps"]) == (1500, 140000)
    assert c["inner"]["final_lr_fraction"] == pytest.approx(0.1) and c["inner"]["grad_clip"] == 1.0
    s = c["sparseloco"]
    assert (s["topk"], s["chunk"], s["error_decay"], s["outer_lr"]) == (64, 64, 0.95, 0.4)
    p = c["peers"]
    assert (p["gather"], p["reserve"], p["upload_window_s"], p["gather_timeout_s"]) == (20, 10, 70, 90)
    assert c["data"]["seq_len"] == 2048 and c["chain"]["netuid"] == 3


def test_unknown_key_wrong_type_and_missing_key_are_rejected():
    good = load_run_config("tiny-local")
    with pytest.raises(RunConfigError, match="unknown key 'inner.learning_rate'"):
        validate(apply_overrides(good, ["inner.learning_rate=1"]))
    with pytest.raises(RunConfigError, match="unknown section 'wandb'"):
        validate(apply_overrides(good, ["wandb.project=x"]))
    with pytest.raises(RunConfigError, match="'inner.steps' must be int"):
        validate(apply_overrides(good, ["inner.steps=fast"]))
    with pytest.raises(RunConfigError, match="'inner.steps' must be int, got bool"):
        validate(apply_overrides(good, ["inner.steps=true"]))
    broken = apply_overrides(good, [])
    del broken["peers"]["gather"]
    with pytest.raises(RunConfigError, match="missing required key 'peers.gather'"):
        validate(broken)
    with pytest.raises(RunConfigError, match="section.key=value"):
        apply_overrides(good, ["lr=3"])


def test_overrides_are_parsed_as_yaml_and_do_not_mutate_input():
    base = load_run_config("tiny-local")
    out = apply_overrides(base, ["inner.lr=3e-4", "mesh.spec=fsdp=4,tensor=2", "inner.betas=[0.8, 0.9]"])
    assert out["inner"]["lr"] == pytest.approx(3e-4)
    assert out["mesh"]["spec"] == "fsdp=4,tensor=2"
    assert out["inner"]["betas"] == [0.8, 0.9]
    assert base["inner"]["lr"] == pytest.approx(1e-3)


def test_bad_file_gives_typed_error(tmp_path):
    (tmp_path / "x.yaml").write_text("run: [1, 2\n")
    with pytest.raises(RunConfigError, match="not valid YAML"):
        load_run_config(tmp_path / "x.yaml")
    with pytest.raises(RunConfigError, match="cannot read"):
        load_run_config(tmp_path / "missing.yaml")


def test_docs_document_exactly_the_schema_keys():
    text = (REPO / "docs" / "run-config.md").read_text()
    documented = set(re.findall(r"\| `([a-z_]+\.[a-z_]+)` \|", text))
    assert documented == set(all_keys())
    assert sum(len(v) for v in SCHEMA.values()) == len(all_keys())
