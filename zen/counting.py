"""Counting a Transformer's parameters and FLOPs on paper.

A Transformer's size follows from a handful of numbers (:class:`TransformerSize`). With
``d = d_model``, ``h`` heads of key width ``d_k`` and value width ``d_v`` (``h·d_k = h·d_v = d``
by default), ``d_ff`` and biases, one attention sub-layer has ``3·d·(h·d_k)``-ish weights::

    attention  = d·h·d_k + d·h·d_k + d·h·d_v  (q, k, v)  +  h·d_v·d (out)     [+ biases]
    FFN        = d·d_ff + d_ff·d                                              [+ d_ff + d]
    LayerNorm  = 2·d
    encoder layer = attention + FFN + 2 LN;   decoder layer = 2 attention + FFN + 3 LN

so a layer holds ``≈ 12·d²`` parameters at ``d_ff = 4d``. :func:`param_count` returns the
breakdown and reproduces Table 3 of Vaswani et al. (2017) (:data:`VASWANI_BASE`,
:data:`VASWANI_BIG`, :data:`VASWANI_TABLE3`) and GPT-2's 124M (:data:`GPT2_SMALL`).

FLOPs: a matrix product ``(m, k) @ (k, n)`` costs ``2·m·k·n`` FLOPs (a multiply and an add).
:func:`forward_flops` counts every matrix product of one forward pass of one sequence —
projections, the ``QKᵀ`` scores and the weighted sum ``AV`` (which grow with the context
length: the O(n²) term), the FFN and the output layer. Element-wise work (softmax,
LayerNorm, activations) is ignored: it is a few percent. Per token that is ``≈ 2N`` for a
model with ``N`` non-embedding parameters (each weight is used in one multiply-add), and the
backward pass costs twice the forward (gradients with respect to inputs *and* weights), so
training costs ``≈ 6N`` FLOPs per token (:func:`training_flops`, Kaplan et al., 2020).
The chapter checks both counts against modules built by :mod:`zen.transformer` and against
``torch.utils.flop_counter.FlopCounterMode``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn

from zen import validate

__all__ = [
    "count_parameters",
    "TransformerSize",
    "param_count",
    "forward_flops",
    "training_flops",
    "VASWANI_BASE",
    "VASWANI_BIG",
    "VASWANI_TABLE3",
    "GPT2_SMALL",
]


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalars in ``module``'s parameters; shared (tied) tensors are counted once."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@dataclass(frozen=True)
class TransformerSize:
    """The numbers that fix a Transformer's size.

    ``n_layers`` is the decoder depth (or the depth of a decoder-only / encoder-only stack);
    ``n_enc_layers > 0`` makes it an encoder–decoder whose decoder layers have cross-attention.
    ``max_len > 0`` adds learned positions (sinusoidal and RoPE have no parameters).
    ``shared_embeddings``: source and target share one table (encoder–decoder);
    ``tie_output``: the output layer reuses the (target) embedding; ``final_norm``: one
    LayerNorm after each stack (pre-norm models).
    """

    d_model: int
    n_heads: int
    d_ff: int
    n_layers: int
    vocab_size: int
    n_enc_layers: int = 0
    d_k: int | None = None
    d_v: int | None = None
    max_len: int = 0
    shared_embeddings: bool = True
    tie_output: bool = True
    bias: bool = True
    final_norm: bool = False

    def __post_init__(self) -> None:
        for name in ("d_model", "n_heads", "d_ff", "n_layers", "vocab_size"):
            validate.positive_int(getattr(self, name), name)
        if self.d_k is None:
            validate.divisible(self.d_model, self.n_heads, "d_model", "n_heads")

    @property
    def dk(self) -> int:
        return self.d_k or self.d_model // self.n_heads

    @property
    def dv(self) -> int:
        return self.d_v or self.d_model // self.n_heads


def _attention(s: TransformerSize) -> int:
    d, hk, hv, b = s.d_model, s.n_heads * s.dk, s.n_heads * s.dv, int(s.bias)
    return 2 * (d * hk + b * hk) + (d * hv + b * hv) + (hv * d + b * d)


def _ffn(s: TransformerSize) -> int:
    return 2 * s.d_model * s.d_ff + int(s.bias) * (s.d_ff + s.d_model)


def _norm(s: TransformerSize) -> int:
    return (1 + int(s.bias)) * s.d_model


def param_count(s: TransformerSize) -> dict[str, int]:
    """Parameters by part: ``embeddings``, ``positions``, ``encoder``, ``decoder``, ``lm_head``,
    ``non_embedding`` (the stacks) and ``total``."""
    cross = s.n_enc_layers > 0
    enc_layer = _attention(s) + _ffn(s) + 2 * _norm(s)
    dec_layer = (2 if cross else 1) * _attention(s) + _ffn(s) + (3 if cross else 2) * _norm(s)
    n_tables = 1 if (not cross or s.shared_embeddings) else 2
    parts = {
        "embeddings": n_tables * s.vocab_size * s.d_model,
        "positions": s.max_len * s.d_model,  # one table, shared by source and target
        "encoder": s.n_enc_layers * enc_layer + (_norm(s) if cross and s.final_norm else 0),
        "decoder": s.n_layers * dec_layer + (_norm(s) if s.final_norm else 0),
        "lm_head": 0 if s.tie_output else s.vocab_size * s.d_model,
    }
    parts["non_embedding"] = parts["encoder"] + parts["decoder"]
    parts["total"] = sum(v for k, v in parts.items() if k != "non_embedding")
    return parts


def forward_flops(s: TransformerSize, seq_len: int, src_len: int | None = None) -> dict[str, int]:
    """Matrix-product FLOPs of one forward pass over one sequence of ``seq_len`` (target) tokens.

    For an encoder–decoder, ``src_len`` source tokens go through the encoder (default
    ``seq_len``). Attention scores are computed for every (query, key) pair, as the plain
    and causal-masked implementations do. Keys: ``projections`` (q, k, v, out), ``scores``
    (``QKᵀ`` and ``AV``), ``ffn``, ``lm_head``, ``total``.
    """
    validate.positive_int(seq_len, "seq_len")
    cross = s.n_enc_layers > 0
    S = (src_len or seq_len) if cross else 0
    d, hk, hv = s.d_model, s.n_heads * s.dk, s.n_heads * s.dv
    proj_per_token = 2 * (
        2 * d * hk + 2 * d * hv
    )  # q, k (d -> h·d_k), v (d -> h·d_v), out (h·d_v -> d)

    def scores(n_q: int, n_k: int) -> int:  # QKᵀ (n_q, d_k) @ (d_k, n_k) and A V per head
        return 2 * n_q * n_k * hk + 2 * n_q * n_k * hv

    ffn_per_token = 2 * 2 * d * s.d_ff
    flops = {
        "projections": s.n_layers * seq_len * proj_per_token + s.n_enc_layers * S * proj_per_token,
        "scores": s.n_layers * scores(seq_len, seq_len) + s.n_enc_layers * scores(S, S),
        "ffn": (s.n_layers * seq_len + s.n_enc_layers * S) * ffn_per_token,
        "lm_head": 2 * seq_len * d * s.vocab_size,
    }
    if cross:  # cross-attention: q and out per target token, k and v per source token, scores T×S
        flops["projections"] += s.n_layers * (
            2 * seq_len * (d * hk + hv * d) + 2 * S * (d * hk + d * hv)
        )
        flops["scores"] += s.n_layers * scores(seq_len, S)
    flops["total"] = sum(flops.values())
    return flops


def training_flops(n_params: int, n_tokens: int) -> int:
    """The ``C ≈ 6·N·D`` rule: ``2N`` forward + ``4N`` backward FLOPs per token, × ``D`` tokens."""
    return 6 * n_params * n_tokens


#: Table 3 "base": N=6, d_model=512, d_ff=2048, h=8, shared source–target vocabulary of ~37k BPE
#: tokens.
VASWANI_BASE = TransformerSize(
    d_model=512, n_heads=8, d_ff=2048, n_layers=6, n_enc_layers=6, vocab_size=37000
)
#: Table 3 "big": d_model=1024, d_ff=4096, h=16.
VASWANI_BIG = replace(VASWANI_BASE, d_model=1024, n_heads=16, d_ff=4096)
#: Rows of Table 3 that change the size, with the paper's parameter counts (millions).
VASWANI_TABLE3: dict[str, tuple[TransformerSize, float]] = {
    "base": (VASWANI_BASE, 65),
    "(B) d_k=16": (replace(VASWANI_BASE, d_k=16, d_v=64), 58),
    "(B) d_k=32": (replace(VASWANI_BASE, d_k=32, d_v=64), 60),
    "(C) N=2": (replace(VASWANI_BASE, n_layers=2, n_enc_layers=2), 36),
    "(C) N=4": (replace(VASWANI_BASE, n_layers=4, n_enc_layers=4), 50),
    "(C) N=8": (replace(VASWANI_BASE, n_layers=8, n_enc_layers=8), 80),
    "(C) d_model=256": (replace(VASWANI_BASE, d_model=256, d_k=32, d_v=32), 28),
    "(C) d_model=1024": (replace(VASWANI_BASE, d_model=1024, d_k=128, d_v=128), 168),
    "(C) d_ff=1024": (replace(VASWANI_BASE, d_ff=1024), 53),
    "(C) d_ff=4096": (replace(VASWANI_BASE, d_ff=4096), 90),
    "big": (VASWANI_BIG, 213),
}
#: GPT-2 small: 12 pre-norm layers, learned positions, final LayerNorm, tied output (124,439,808).
GPT2_SMALL = TransformerSize(
    d_model=768, n_heads=12, d_ff=3072, n_layers=12, vocab_size=50257, max_len=1024, final_norm=True
)
