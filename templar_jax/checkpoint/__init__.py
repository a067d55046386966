"""templar_jax.checkpoint"""
