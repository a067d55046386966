"""Parameter-tree naming for the model wing (defined in `templar_jax.tree`, shared by all wings)."""

from templar_jax.tree import ParamTreeError, flatten_params, unflatten_params

__all__ = ["ParamTreeError", "flatten_params", "unflatten_params"]
