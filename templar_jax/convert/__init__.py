"""templar_jax.convert"""
