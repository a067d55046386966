"""Run configs: shipped files load into RunConfig, carry the SPEC numbers, reject unknown keys and
wrong types naming the key; overrides are YAML; derived values are properties of the sections."""

import dataclasses

import pytest

from templar_jax.config import RunConfig, RunConfigError, apply_overrides, load_run_config
from templar_jax.config.run_config import read_run_config_dict, resolve_run_config_path
from templar_jax.model.config import presets_dir
from templar_jax.sparseloco.kernels.config import KernelConfig
from templar_jax.train.optimizer import TrainConfig, make_inner_optimizer


@pytest.mark.parametrize("name", ["covenant-72b", "1b", "tiny-local", "demo"])
def test_shipped_configs_load_and_name_existing_model_presets(name):
    cfg = load_run_config(name)
    assert (presets_dir() / f"{cfg.model.preset}.yaml").is_file()
    assert cfg.inner.batch % cfg.inner.micro_batch == 0
    assert cfg.inner.batch <= cfg.inner.target_batch
    assert RunConfig.from_dict(cfg.to_dict()) == cfg  # round trip


def test_covenant_config_carries_spec_hyperparameters():
    c = load_run_config("covenant-72b")
    assert c.run.blocks_per_window == 115 and c.run.null_rounds == 2
    assert c.inner.steps == 30
    assert c.inner.lr == pytest.approx(1.2e-4)
    assert c.inner.betas == (0.9, 0.95) and c.inner.eps == pytest.approx(1e-8)
    assert c.inner.weight_decay == pytest.approx(0.1)
    assert (c.inner.warmup_steps, c.inner.cosine_steps) == (1500, 140000)
    assert c.inner.final_lr_fraction == pytest.approx(0.1) and c.inner.grad_clip == 1.0
    s = c.sparseloco
    assert (s.topk, s.chunk, s.error_decay, s.outer_lr) == (64, 64, 0.95, 0.4)
    p = c.peers
    assert (p.gather, p.reserve, p.upload_window_s, p.gather_timeout_s) == (20, 10, 70, 90)
    assert c.data.seq_len == 2048 and c.chain.netuid == 3


def test_unknown_key_wrong_type_and_missing_key_are_rejected():
    good = load_run_config("tiny-local").to_dict()
    with pytest.raises(RunConfigError, match="unknown key 'inner.learning_rate'"):
        RunConfig.from_dict(apply_overrides(good, ["inner.learning_rate=1"]))
    with pytest.raises(RunConfigError, match="unknown section 'wandb'"):
        RunConfig.from_dict(apply_overrides(good, ["wandb.project=x"]))
    with pytest.raises(RunConfigError, match="'inner.steps' must be int"):
        RunConfig.from_dict(apply_overrides(good, ["inner.steps=fast"]))
    with pytest.raises(RunConfigError, match="'inner.steps' must be int, got bool"):
        RunConfig.from_dict(apply_overrides(good, ["inner.steps=true"]))
    broken = apply_overrides(good, [])
    del broken["peers"]["gather"]
    with pytest.raises(RunConfigError, match="missing required key 'peers.gather'"):
        RunConfig.from_dict(broken)
    del broken["peers"]
    with pytest.raises(RunConfigError, match="missing required key 'peers.gather'"):
        RunConfig.from_dict(broken)
    with pytest.raises(RunConfigError, match="section.key=value"):
        apply_overrides(good, ["lr=3"])
    with pytest.raises(RunConfigError, match="section 'inner' must be a mapping"):
        RunConfig.from_dict({**good, "inner": [1, 2]})


def test_typed_values_enums_and_nested_kernel_section_name_the_key():
    with pytest.raises(RunConfigError, match="'sparseloco.aggregation' must be one of 'median_clip_mean', 'sum'"):
        load_run_config("demo", ["sparseloco.aggregation=mean"])
    with pytest.raises(RunConfigError, match="'chain.backend' must be one of"):
        load_run_config("demo", ["chain.backend=substrate"])
    with pytest.raises(RunConfigError, match="'inner.betas' must be list of 2 float"):
        load_run_config("demo", ["inner.betas=[0.9]"])
    with pytest.raises(RunConfigError, match="'peers.upload_window_s' must be float, got bool"):
        load_run_config("demo", ["peers.upload_window_s=yes"])
    with pytest.raises(RunConfigError, match="'storage.endpoint' must be str, got int"):
        load_run_config("demo", ["storage.endpoint=5"])
    with pytest.raises(RunConfigError, match="unknown key 'sparseloco.kernel.warps'"):
        load_run_config("demo", ["sparseloco.kernel.warps=4"])
    with pytest.raises(RunConfigError, match=r"sparseloco.kernel.num_warps=3"):
        load_run_config("demo", ["sparseloco.kernel.num_warps=3"])  # KernelConfig's own check
    with pytest.raises(RunConfigError, match="'sparseloco.topk' is not a section"):
        load_run_config("demo", ["sparseloco.topk.x=1"])
    cfg = load_run_config("demo", ["sparseloco.kernel.num_warps=4", "sparseloco.kernel.dots=bf16",
                                   "peers.upload_window_s=3", "storage.endpoint=null"])
    assert cfg.sparseloco.kernel == KernelConfig(num_warps=4, dots="bf16")
    assert load_run_config("demo").sparseloco.kernel == KernelConfig()  # optional: all defaults
    assert cfg.peers.upload_window_s == 3.0 and isinstance(cfg.peers.upload_window_s, float)
    assert cfg.storage.endpoint is None


def test_overrides_are_parsed_as_yaml_and_do_not_mutate_input():
    base = read_run_config_dict("tiny-local")
    out = apply_overrides(base, ["inner.lr=3e-4", "mesh.spec=fsdp=4,tensor=2", "inner.betas=[0.8, 0.9]"])
    assert out["inner"]["lr"] == pytest.approx(3e-4)
    assert out["mesh"]["spec"] == "fsdp=4,tensor=2"
    assert out["inner"]["betas"] == [0.8, 0.9]
    assert base["inner"]["lr"] == pytest.approx(1e-3)
    cfg = RunConfig.from_dict(out)
    assert cfg.inner.lr == pytest.approx(3e-4) and cfg.inner.betas == (0.8, 0.9)
    assert cfg.with_overrides(["inner.steps=2"]).inner.steps == 2 and cfg.inner.steps == 4


def test_yaml_1_1_exponent_without_dot_is_a_number_in_files_too(tmp_path):
    text = resolve_run_config_path("tiny-local").read_text()
    assert "  lr: 1.0e-3\n" in text
    (tmp_path / "r.yaml").write_text(text.replace("  lr: 1.0e-3\n", "  lr: 3e-4\n"))
    assert load_run_config(tmp_path / "r.yaml").inner.lr == pytest.approx(3e-4)
    assert load_run_config("tiny-local", ["inner.lr=-2E+1"]).inner.lr == -20.0
    assert load_run_config("tiny-local", ["run.version=v3e"]).run.version == "v3e"


def test_bad_file_gives_typed_error(tmp_path):
    (tmp_path / "x.yaml").write_text("run: [1, 2\n")
    with pytest.raises(RunConfigError, match="not valid YAML"):
        load_run_config(tmp_path / "x.yaml")
    with pytest.raises(RunConfigError, match="cannot read"):
        load_run_config(tmp_path / "missing.yaml")
    with pytest.raises(RunConfigError, match="shipped: 1b, covenant-72b, demo, tiny-local"):
        load_run_config("no-such-run")


def test_derived_values_are_section_properties():
    cfg = load_run_config("demo")
    assert cfg.sparseloco.aggregation_rule == "median_clip"
    assert cfg.with_overrides(["sparseloco.aggregation=sum"]).sparseloco.aggregation_rule == "mean"
    assert cfg.sparseloco.wire_index_coding == "elias-fano"
    assert cfg.with_overrides(["sparseloco.index_coding=12bit"]).sparseloco.wire_index_coding == "twelve-bit"
    assert cfg.run.init_seed == 2045763931  # blake2b of the version: every peer starts alike
    assert cfg.with_overrides(["run.version=other"]).run.init_seed != cfg.run.init_seed
    assert cfg.inner.accum_steps == 1 and cfg.with_overrides(["inner.micro_batch=2"]).inner.accum_steps == 4
    assert cfg.run.resume_interval_windows == 1 and load_run_config("1b").run.resume_interval_windows == 0


def test_inner_section_is_the_optimizers_train_config():
    inner = load_run_config("demo").inner
    assert isinstance(inner, TrainConfig)
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= {f.name for f in dataclasses.fields(inner)}
    make_inner_optimizer(inner)  # no mapping step between the run config and the optimizer
    with pytest.raises(dataclasses.FrozenInstanceError):
        inner.lr = 1.0
