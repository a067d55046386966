"""What every method of a comparison shares: the model and its init, the inner optimizer, the
(vmapped) inner step, held-out evaluation and the replicas' data."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from templar_jax.experiment.config import SimConfig
from templar_jax.experiment.data import ReplicaData
from templar_jax.model import init_params, load_model_config, param_count
from templar_jax.train.loop import run_steps
from templar_jax.train.loss import loss_fn
from templar_jax.train.optimizer import TrainConfig, make_inner_optimizer
from templar_jax.train.step import make_train_step


class Simulator:
    """One model trained as R replicas; `step` trains one batch, `vstep` all R at once (vmapped)."""

    def __init__(self, cfg: SimConfig):
        self.cfg = cfg
        self.model_cfg = load_model_config(cfg.model)
        self.seq_len = self.model_cfg.max_seq_len
        self.data = ReplicaData(cfg.data, replicas=cfg.replicas, batch=cfg.batch,
                                seq_len=self.seq_len, vocab_size=self.model_cfg.vocab_size,
                                n_eval=cfg.n_eval, seed=cfg.seed)
        total_steps = cfg.inner_steps * cfg.rounds
        train_cfg = TrainConfig(lr=cfg.inner_lr, warmup_steps=cfg.warmup_steps,
                                cosine_steps=cfg.cosine_steps or max(total_steps - cfg.warmup_steps, 1))
        self.optimizer = make_inner_optimizer(train_cfg)
        self.params0 = init_params(self.model_cfg, cfg.seed)
        self.numel = param_count(self.model_cfg)
        # not donated: params0 and the round's global params are read again after training
        self.step = make_train_step(self.model_cfg, self.optimizer, pad_id=self.data.pad_id, donate=False)
        self.vstep = jax.jit(jax.vmap(self.step))
        model_cfg, pad_id = self.model_cfg, self.data.pad_id
        self.eval_loss = jax.jit(lambda p, b: loss_fn(p, b, model_cfg, pad_id)[0])
        self.tokens_per_round = cfg.replicas * cfg.inner_steps * cfg.batch * self.seq_len

    def evaluate(self, params) -> float:
        return float(self.eval_loss(params, jnp.asarray(self.data.heldout)))

    def replicate(self, tree):
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (self.cfg.replicas,) + x.shape), tree)

    def round_steps(self, round_index: int) -> range:
        """The global inner-step numbers of one round (they index the data)."""
        h = self.cfg.inner_steps
        return range(round_index * h, (round_index + 1) * h)

    def inner_round(self, params, opt_states, round_index: int):
        """H vmapped inner steps from the broadcast global params -> stacked replica params."""
        batches = (self.data.stacked(s) for s in self.round_steps(round_index))
        out = run_steps(self.vstep, self.replicate(params), opt_states, batches)
        return out.params, out.opt_state
