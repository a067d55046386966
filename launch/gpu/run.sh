#!/usr/bin/env bash
# Thin wrapper: `launch/gpu/run.sh ACTION --cluster C [...] [-- SUBCOMMAND ...]`
# is `templar-jax launch gpu ...` run from the repo root (add --dry-run to only print).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec "${TEMPLAR_JAX:-templar-jax}" launch gpu "$@"
