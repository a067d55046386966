"""templar_jax.data"""
