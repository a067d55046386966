"""templar_jax.sparseloco"""
