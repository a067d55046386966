"""Where the YAML files shipped inside the package live (`templar_jax/configs/`).

They are package data, so a non-editable install finds them too; nothing here depends on a
source checkout. The top-level `configs` folder of the repository is a link to this one.
"""

from __future__ import annotations

from pathlib import Path

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
MODEL_PRESETS_DIR = CONFIGS_DIR / "models"  # {name}.yaml: ModelConfig shape keys
RUN_CONFIGS_DIR = CONFIGS_DIR / "runs"  # {name}.yaml: run configs (templar_jax.config)
