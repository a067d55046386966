"""templar_jax.storage"""
