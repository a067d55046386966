"""templar-jax: decentralized LLM pre-training (SparseLoCo + Gauntlet) in JAX/Flax."""

__version__ = "0.1.0"
