"""templar_jax.neurons"""
