"""The miner and validator window loops. `assemble` builds a neuron's parts from a run config
(the CLI and the demo go through it); `Miner` / `Validator` only receive them. No wing imports
this package; what the neurons share with other code lives below in `templar_jax.protocol`."""
