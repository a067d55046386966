"""Throughput metrics: a documented FLOP count per token and model FLOPs utilization (MFU).

FLOPs per trained token (forward + backward = 3x forward, 2 FLOPs per multiply-add):
    6 * N_matmul  +  12 * n_layers * n_heads * head_dim * seq_len
N_matmul is every weight that takes part in a matmul: the attention and MLP matrices of
every layer plus the output projection (a tied embedding counts once, as the LM head; the
input lookup and the norm scales are not matmuls). The second term is the attention score and value matmuls (QK^T and AV,
2 * 2 * L_q * L_k * H * hd forward per layer, times 3), counted over the full, non-causal
square as in PaLM (Chowdhery et al. 2022, appendix B); norms, RoPE and softmax are ignored.
MFU = achieved FLOP/s / (peak FLOP/s per device * devices).
"""

from __future__ import annotations

from templar_jax.model.config import ModelConfig


def matmul_param_count(cfg: ModelConfig) -> int:
    """Weights used in matmuls: attention + MLP of every layer and the output projection."""
    hq, hkv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    attention = 2 * cfg.d_model * hq + 2 * cfg.d_model * hkv
    mlp = 3 * cfg.d_model * cfg.d_ff
    return cfg.n_layers * (attention + mlp) + cfg.d_model * cfg.vocab_size


def train_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    attention = 12.0 * cfg.n_layers * cfg.n_heads * cfg.head_dim * seq_len
    return 6.0 * matmul_param_count(cfg) + attention


def mfu(cfg: ModelConfig, seq_len: int, tokens_per_s: float, peak_tflops: float, n_devices: int) -> float:
    """Fraction of peak achieved (0..1); 0 when peak_tflops is not given."""
    if not peak_tflops or peak_tflops <= 0:
        return 0.0
    return train_flops_per_token(cfg, seq_len) * tokens_per_s / (peak_tflops * 1e12 * n_devices)
