#!/usr/bin/env bash
# Thin wrapper: `launch/tpu/run.sh ACTION --name N --zone Z --slice S [...] [-- SUBCOMMAND ...]`
# is `templar-jax launch tpu ...` run from the repo root (add --dry-run to only print).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec "${TEMPLAR_JAX:-templar-jax}" launch tpu "$@"
