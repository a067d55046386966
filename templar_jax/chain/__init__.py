"""templar_jax.chain"""
