"""Mesh planning: the launcher's parameter count agrees with the model's; meshes for the
shipped slices; tensor parallelism only when a layer's working set does not fit.

The foundation's `plan_memory` had not landed when this was written, so these check the
launcher's own derivation (see templar_jax/launch/mesh_plan.py)."""

import pytest

from templar_jax.launch.hardware import load_tpu_slice
from templar_jax.launch.mesh_plan import (
    MeshPlanError, estimate_device_bytes, model_param_count, plan_mesh,
)
from templar_jax.model.config import load_model_config


@pytest.mark.parametrize("preset", ["tiny", "150m", "1b", "covenant-72b"])
def test_param_count_matches_the_model_api(preset):
    from templar_jax.model.api import param_count

    cfg = load_model_config(preset)
    assert model_param_count(cfg) == param_count(cfg)


def test_covenant_72b_param_count_is_the_spec_figure():
    assert model_param_count(load_model_config("covenant-72b")) / 1e9 == pytest.approx(70.6, abs=0.05)


def plan_for_slice(preset, slice_name, micro_batch, seq_len=2048):
    s = load_tpu_slice(slice_name)
    return plan_mesh(load_model_config(preset), devices=s.chips, devices_per_host=s.chips_per_host,
                     num_processes=s.hosts, hbm_gb=s.hbm_gb_per_chip, micro_batch=micro_batch,
                     seq_len=seq_len)


@pytest.mark.parametrize("preset,slice_name,mb,fsdp,procs", [
    ("covenant-72b", "v5p-64", 32, 32, 8),
    ("1b", "v5e-16", 16, 16, 4),
    ("1b", "v5e-8", 16, 8, 1),
    ("1b", "v4-32", 16, 16, 4),
])
def test_shipped_slices_get_fsdp_over_all_chips(preset, slice_name, mb, fsdp, procs):
    plan = plan_for_slice(preset, slice_name, mb)
    assert plan.mesh == {"data": 1, "fsdp": fsdp, "tensor": 1}
    assert plan.num_processes == procs and plan.devices_per_process * procs == fsdp
    assert plan.device_bytes <= plan.budget_bytes


def test_tensor_parallelism_is_chosen_only_when_a_layer_does_not_fit():
    cfg = load_model_config("covenant-72b")
    kw = dict(devices=256, devices_per_host=4, num_processes=64, hbm_gb=16, seq_len=2048)
    plan = plan_mesh(cfg, micro_batch=64, **kw)
    assert plan.mesh["tensor"] > 1 and plan.mesh["fsdp"] * plan.mesh["tensor"] == 256
    fsdp_only = sum(estimate_device_bytes(cfg, 256, 1, 64, 2048).values())
    assert fsdp_only > plan.budget_bytes >= plan.device_bytes
    # state alone exceeds HBM: no mesh helps, the error says so with numbers
    with pytest.raises(MeshPlanError, match="does not fit 16 devices of 80 GB"):
        plan_mesh(cfg, devices=16, devices_per_host=8, num_processes=2, hbm_gb=80,
                  micro_batch=16, seq_len=2048)


def test_explicit_mesh_is_checked_against_device_count():
    cfg = load_model_config("tiny")
    plan = plan_mesh(cfg, devices=8, devices_per_host=8, num_processes=1, hbm_gb=16,
                     micro_batch=8, seq_len=128, mesh_spec="fsdp=4,tensor=2")
    assert plan.mesh == {"data": 1, "fsdp": 4, "tensor": 2}
    with pytest.raises(MeshPlanError, match="needs 4 devices, have 8"):
        plan_mesh(cfg, devices=8, devices_per_host=8, num_processes=1, hbm_gb=16,
                  micro_batch=8, seq_len=128, mesh_spec="fsdp=4")
