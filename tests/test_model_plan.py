"""Memory plan arithmetic (no allocation) and the `plan` CLI."""

import json

import pytest

from templar_jax.cli import main
from templar_jax.model import layer_param_count, load_model_config, param_count
from templar_jax.model.fit import GB, fit_report
from templar_jax.model.plan import (
    GIB, OFFLOADABLE, activation_bytes, attention_score_bytes, embedding_grad_bytes, gathered_weight_bytes,
    plan_memory, sharded_shape,
)


def test_sharded_shapes_follow_rules():
    mesh = {"data": 1, "fsdp": 8, "tensor": 2}
    assert sharded_shape((80, 8192, 28672), ("layers", "embed", "mlp"), mesh) == (80, 1024, 14336)
    assert sharded_shape((262144, 8192), ("vocab", "embed"), mesh) == (131072, 1024)
    # indivisible dimension stays whole rather than padding
    assert sharded_shape((2, 100), ("layers", "embed"), mesh) == (2, 100)


def test_covenant_fsdp8_state_bytes():
    cfg = load_model_config("covenant-72b")
    plan = plan_memory(cfg, "fsdp=8", micro_batch=1, seq_len=2048, remat="full", device_gb=80)
    # every 72B tensor divides by 8 along its embed axis: exactly 1/8 of the params per device
    assert plan["params_per_device"] * 8 == param_count(cfg)
    rows = plan["rows_bytes"]
    assert rows["params (fp32)"] == param_count(cfg) * 4 / 8
    assert rows["adamw mu+nu (2x fp32)"] == 2 * rows["params (fp32)"]
    assert rows["error feedback (fp32)"] == rows["theta0 copy (fp32)"] == rows["params (fp32)"]
    assert plan["phases_bytes"]["train"] == sum(rows.values())
    assert plan["total_bytes"] == max(plan["phases_bytes"].values()) == plan["phases_bytes"][plan["peak_phase"]]
    assert not plan["fits"]  # 6 x 35.3 GB of fp32 state alone
    assert plan_memory(cfg, "fsdp=64", remat="full", device_gb=80)["fits"]


def test_activation_policies_order():
    cfg = load_model_config("8b")
    sizes = [activation_bytes(cfg, 1, 2048, p, 1) for p in ("none", "dots_saveable", "full")]
    assert sizes[0] > sizes[1] > sizes[2] > 0
    assert activation_bytes(cfg, 2, 2048, "full", 1) == pytest.approx(2 * sizes[2])
    assert activation_bytes(cfg, 1, 2048, "none", 4) < sizes[0]


def test_plan_cli(capsys):
    assert main(["plan", "--model", "covenant-72b", "--mesh", "fsdp=8"]) == 0
    out = capsys.readouterr().out
    assert "70.6B" in out and "72.7B" in out and "does NOT fit" in out
    assert main(["plan", "--model", "1b", "--mesh", "data=2,fsdp=4", "--json", "--device-gb", "40"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["fits"] and plan["mesh"] == {"data": 2, "fsdp": 4, "tensor": 1}
    assert main(["plan", "--model", "1b", "--mesh", "pipe=2"]) == 2


def test_unfused_attention_adds_its_scores_and_fused_does_not():
    cfg = load_model_config("1b")
    gpu = plan_memory(cfg, "fsdp=8", seq_len=2048, remat="full", platform="gpu")
    tpu = plan_memory(cfg, "fsdp=8", seq_len=2048, remat="full", platform="tpu")
    scores = tpu["rows_bytes"].pop("attention scores (fp32, unfused)")
    assert scores == attention_score_bytes(cfg, 1, 2048, "full", 1) == cfg.n_heads * 2048**2 * 4
    assert tpu["rows_bytes"] == gpu["rows_bytes"] and tpu["total_bytes"] == gpu["total_bytes"] + scores
    # a policy that saves the scores keeps every layer's, plus the one being computed
    assert attention_score_bytes(cfg, 1, 2048, "none", 1) == (cfg.n_layers + 1) * scores
    # fp32 compute cannot use cuDNN's fused kernel, so the GPU plan counts the scores too
    assert "attention scores (fp32, unfused)" in plan_memory(cfg.replace(dtype="float32"), platform="gpu")["rows_bytes"]


def test_gathered_weights_come_from_the_parameter_table():
    cfg = load_model_config("covenant-72b")
    layer = layer_param_count(cfg)
    assert gathered_weight_bytes(cfg, 1) == max(2 * layer, cfg.vocab_size * cfg.d_model) * 2
    # kv projections (8 heads) divide by tensor=8 like the rest; the norms stay whole
    assert gathered_weight_bytes(cfg, 8) == max(2 * ((layer - 2 * cfg.d_model) / 8 + 2 * cfg.d_model),
                                                cfg.vocab_size * cfg.d_model) * 2


def test_offload_moves_state_from_the_device_to_the_host():
    cfg = load_model_config("covenant-72b")
    kw = dict(micro_batch=1, seq_len=2048, remat="full")
    plain = plan_memory(cfg, "fsdp=8", **kw)
    state = plain["rows_bytes"]["params (fp32)"]
    assert plain["host_bytes"] == 0 and plain["peak_phase"] == "train"
    assert plain["phases_bytes"]["compress"] > plain["phases_bytes"]["delta"] == plain["phases_bytes"]["outer"]
    ef = plan_memory(cfg, "fsdp=8", offload=["error_feedback"], **kw)
    assert "error feedback (fp32)" not in ef["rows_bytes"] and ef["host_bytes"] == 8 * state
    assert ef["phases_bytes"]["train"] == plain["phases_bytes"]["train"] - state
    full = plan_memory(cfg, "fsdp=8", offload=OFFLOADABLE, devices_per_host=4, host_gb=500, **kw)
    # AdamW stays on the device for the inner loop, so the inner loop is the peak: 16 bytes/param
    assert full["peak_phase"] == "train" and full["total_bytes"] == plain["total_bytes"] - 2 * state
    assert full["host_bytes"] == 4 * 4 * state and full["host_fits"] is False  # 4 devices x 4 fp32 trees
    with pytest.raises(ValueError, match="unknown offload"):
        plan_memory(cfg, "fsdp=8", offload=["grads"])


def test_covenant_72b_fits_8xB200_with_every_offload_8xH200_needs_bf16_moments_or_more_devices():
    cfg = load_model_config("covenant-72b")
    b200 = fit_report(cfg, devices=8, device_gb=192, host_gb=2000)
    verdicts = {v.offload: v for v in b200.verdicts}
    # every offload on, fp32 AdamW moments: within the 90% the launchers plan for, at micro-batch 2
    everything = verdicts["all"]
    assert everything.fits and everything.micro_batch == 2 and everything.peak_phase == "train"
    assert everything.device_bytes <= 0.9 * 192 * GB
    assert not any(v.fits for n, v in verdicts.items() if n != "all") and not b200.needs
    assert all(v.device_bytes > everything.device_bytes for n, v in verdicts.items() if n != "all")
    assert everything.host_bytes == 16 * param_count(cfg)  # theta0, EF, mu, nu in fp32 on one host
    h200 = fit_report(cfg, devices=8, device_gb=141, host_gb=2000)
    assert not any(v.fits for v in h200.verdicts)  # 16 bytes per parameter of state: 141 GB alone
    assert h200.needs[0].startswith("bf16 AdamW moments") and "micro-batch 1" in h200.needs[0]
    assert h200.needs[1].startswith("16 devices (fsdp=16, every offload on)")


def test_tied_embedding_gradient_per_shard_or_whole():
    cfg = load_model_config("covenant-72b")
    table = cfg.vocab_size * cfg.d_model
    fsdp8 = {"data": 1, "fsdp": 8, "tensor": 1}
    # per shard (fsdp_embedding.py): one of 8 vocabulary slices of the fp32 gradient + the logits' shard
    assert embedding_grad_bytes(cfg, fsdp8, 1) == (table // 8 + table // 8) * 4
    # tensor-parallel meshes keep the replicated path: the fp32 table and its gradient, split over tensor
    assert embedding_grad_bytes(cfg, {"data": 1, "fsdp": 4, "tensor": 2}, 1) == 2 * table // 2 * 4
    cpu = plan_memory(cfg, "fsdp=8", platform="cpu")["rows_bytes"]
    gpu = plan_memory(cfg, "fsdp=8", platform="gpu")["rows_bytes"]
    # XLA:CPU gathers bf16 weights in fp32
    assert cpu["gathered weights (bf16; fp32 on cpu)"] == 2 * gpu["gathered weights (bf16)"] == table * 4


def test_plan_cli_offload_and_fit(capsys):
    assert main(["plan", "--model", "covenant-72b", "--offload", "all", "--device-gb", "150",
                 "--micro-batch", "2", "--host-gb", "1900"]) == 0
    out = capsys.readouterr().out
    assert "does NOT fit in 150 GiB" in out and "1,052.0 GiB per host" in out and "; fits" in out
    assert main(["plan", "--model", "covenant-72b", "--offload", "all", "--device-gb", "200"]) == 0
    assert "fits in 200 GiB" in capsys.readouterr().out
    assert main(["plan", "--model", "covenant-72b", "--fit", "--device-gb", "141", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [v["offload"] for v in report["verdicts"]][-1] == "all" and report["needs"]
    assert main(["plan", "--model", "tiny", "--offload", "grads"]) == 2
