"""templar_jax.train"""
