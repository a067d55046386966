"""templar_jax.model"""
