"""templar_jax.gauntlet"""
