"""Mesh planning for the launchers (templar_jax/model/mesh_choice.py over the one memory
planner, model/plan.py): parameter counts from the parameter table; meshes for the shipped
slices; tensor parallelism only when a layer's working set does not fit."""

import pytest

from templar_jax.config import load_run_config
from templar_jax.launch.hardware import load_tpu_slice
from templar_jax.model import embedding_param_count, layer_param_count, param_count
from templar_jax.model.config import load_model_config
from templar_jax.model.mesh_choice import GB, MeshPlanError, device_plan, plan_mesh
from templar_jax.model.plan import plan_memory
from templar_jax.model.sharding import MeshSpecError


@pytest.mark.parametrize("preset", ["tiny", "150m", "1b", "covenant-72b"])
def test_param_count_is_layers_plus_embedding_plus_head_and_norm(preset):
    cfg = load_model_config(preset)
    head = 0 if cfg.tie_embeddings else embedding_param_count(cfg)
    want = embedding_param_count(cfg) + head + cfg.n_layers * layer_param_count(cfg) + cfg.d_model
    assert param_count(cfg) == want


def test_covenant_72b_param_count_is_the_spec_figure():
    assert param_count(load_model_config("covenant-72b")) / 1e9 == pytest.approx(70.6, abs=0.05)


def test_launch_plan_is_the_cli_plan_for_the_per_device_micro_batch():
    cfg = load_model_config("1b")
    mesh = {"data": 2, "fsdp": 4, "tensor": 1}
    launch = device_plan(cfg, mesh, micro_batch=16, seq_len=2048, budget_bytes=40 * GB, platform="tpu")
    cli = plan_memory(cfg, "data=2,fsdp=4", micro_batch=2, seq_len=2048, remat="full",
                      device_bytes=40 * GB, platform="tpu")
    assert launch == cli


def plan_for_slice(preset, slice_name, micro_batch, seq_len=2048, offload=()):
    s = load_tpu_slice(slice_name)
    return plan_mesh(load_model_config(preset), devices=s.chips, devices_per_host=s.chips_per_host,
                     num_processes=s.hosts, hbm_gb=s.hbm_gb_per_chip, micro_batch=micro_batch,
                     seq_len=seq_len, platform="tpu", offload=offload)


@pytest.mark.parametrize("preset,slice_name,mb,fsdp,procs", [
    ("covenant-72b", "v5p-64", 32, 32, 8),  # with the shipped run config's offload (below)
    ("1b", "v5e-16", 16, 16, 4),
    ("1b", "v5e-8", 16, 8, 1),
    ("1b", "v4-32", 16, 16, 4),
])
def test_shipped_slices_get_fsdp_over_all_chips(preset, slice_name, mb, fsdp, procs):
    offload = load_run_config("covenant-72b").offload.names if preset == "covenant-72b" else ()
    plan = plan_for_slice(preset, slice_name, mb, offload=offload)
    assert plan.mesh == {"data": 1, "fsdp": fsdp, "tensor": 1}
    assert plan.num_processes == procs and plan.devices_per_process * procs == fsdp
    assert plan.device_bytes <= plan.budget_bytes


def test_tensor_parallelism_is_chosen_only_when_a_layer_does_not_fit():
    cfg = load_model_config("covenant-72b")
    # 22.5 GB chips: the state (6.6 GB) fits, but with the gathered bf16 embedding table, one
    # layer's working set, the logits and the attention scores it takes 21.3 GB on fsdp alone,
    # over the 20.25 GB usable; split over tensor=4 it is 19.9 GB
    kw = dict(devices=256, devices_per_host=4, num_processes=64, hbm_gb=22.5, seq_len=2048, platform="tpu")
    plan = plan_mesh(cfg, micro_batch=64, **kw)
    assert plan.mesh["tensor"] > 1 and plan.mesh["fsdp"] * plan.mesh["tensor"] == 256
    fsdp_only = device_plan(cfg, {"data": 1, "fsdp": 256, "tensor": 1}, micro_batch=64, seq_len=2048,
                            budget_bytes=plan.budget_bytes, platform="tpu")["total_bytes"]
    assert fsdp_only > plan.budget_bytes >= plan.device_bytes
    # state alone exceeds HBM: no mesh helps, the error says so with numbers
    with pytest.raises(MeshPlanError, match="does not fit 16 devices of 80 GB"):
        plan_mesh(cfg, devices=16, devices_per_host=8, num_processes=2, hbm_gb=80,
                  micro_batch=16, seq_len=2048, platform="tpu")


def test_explicit_mesh_is_checked_against_device_count():
    cfg = load_model_config("tiny")
    plan = plan_mesh(cfg, devices=8, devices_per_host=8, num_processes=1, hbm_gb=16,
                     micro_batch=8, seq_len=128, mesh_spec="fsdp=4,tensor=2", platform="cpu")
    assert plan.mesh == {"data": 1, "fsdp": 4, "tensor": 2}
    with pytest.raises(MeshPlanError, match="needs 4 devices, have 8"):
        plan_mesh(cfg, devices=8, devices_per_host=8, num_processes=1, hbm_gb=16,
                  micro_batch=8, seq_len=128, mesh_spec="fsdp=4", platform="cpu")
    # the one mesh-spec parser (model.sharding.parse_mesh_spec) names the bad entry
    with pytest.raises(MeshSpecError, match="unknown mesh axes \\['pipe'\\]"):
        plan_mesh(cfg, devices=8, devices_per_host=8, num_processes=1, hbm_gb=16,
                  micro_batch=8, seq_len=128, mesh_spec="pipe=2", platform="cpu")
