"""Scaled dot-product attention and multi-head attention.

Each query reads a weighted average of the values, weighted by how well it matches each key
(Vaswani et al., 2017)::

    Attention(Q, K, V) = softmax(Q Kᵀ · s + M) V,        s = 1/√d_k by default

    q (..., L, E) ─┐
    k (..., S, E) ─┴─ q kᵀ · s + M → scores (..., L, S) ─ softmax over S → weights (..., L, S)
    v (..., S, Ev) ──────────────────────────────── weights @ v → out (..., L, Ev)

``M`` is 0 where a query may see a key and ``-inf`` where it may not. Masks follow
``F.scaled_dot_product_attention``: a **boolean** ``attn_mask`` is ``True`` = *may attend*, a
**float** one is added to the scores, ``is_causal`` lets query ``i`` see keys ``j <= i``.
``key_padding_mask (B, S)`` follows ``nn.MultiheadAttention``: ``True`` = *padding, ignore*
(a Hugging Face ``attention_mask`` converts as ``attention_mask == 0``). A query whose keys are
all masked gets zero weights and a zero output, as in PyTorch.

Multi-head attention runs ``h`` heads of width ``d_head = d_model / h`` side by side::

    x (B, L, d) ─q/k/v_proj→ (B, L, h·d_head) ─split→ (B, h, L, d_head)
      → attention per head (B, h, L, d_head) ─merge→ (B, L, h·d_head) ─out_proj→ (B, L, d)

A :class:`KVCache` keeps the keys and values of earlier positions ``(B, h, S_past, d_head)`` so
that decoding one token at a time costs one position of work.

Grouped-query attention (GQA, Ainslie et al., 2023) gives the keys and values fewer heads,
``n_kv_heads`` dividing ``n_heads``; query head ``j`` reads key/value head ``j // (h / h_kv)``.
Multi-query attention (Shazeer, 2019) is ``n_kv_heads = 1``. The cache shrinks by ``h / h_kv``::

    k, v (B, h_kv, S, d_head) ─repeat each head h/h_kv times→ (B, h, S, d_head) → attention
"""

from zen.attention.multihead import (
    KVCache,
    MultiHeadAttention,
    merge_heads,
    repeat_kv,
    split_heads,
)
from zen.attention.sdpa import causal_mask, scaled_dot_product_attention

__all__ = [
    "scaled_dot_product_attention",
    "causal_mask",
    "KVCache",
    "MultiHeadAttention",
    "split_heads",
    "merge_heads",
    "repeat_kv",
]
