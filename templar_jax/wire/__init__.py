"""templar_jax.wire"""
