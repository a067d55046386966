"""Launchers: TPU pod slices (gcloud), GPU clusters (SLURM sbatch or plain ssh), run configs.

Everything here *generates* commands (lists of argv) and prints them under `--dry-run`;
only `shell.run_commands` executes anything. The per-process entry point is `launch.entry`.
"""
