"""Ring attention: sequence (context) parallelism for attention, from point-to-point messages.

A sequence too long for one device is cut into ``p`` blocks of ``S / p`` tokens; rank ``r``
holds the queries, keys and values of block ``r``. Attention needs every query to meet every
key, so the key/value blocks travel around the ring (Liu et al., 2023): in step ``j`` rank
``r`` holds block ``(r - j) mod p``, scores its queries against it, passes it right and
receives the next from the left — the next block's transfer overlapping this block's math::

    step 0:  rank 0 ← K₀V₀   rank 1 ← K₁V₁   ...      (own block)
    step 1:  rank 0 ← K₃V₃   rank 1 ← K₀V₀   ...      (from the left neighbour)

The blocks' softmaxes are merged with the *online softmax* (FlashAttention's rule): keep per
query the running maximum ``m``, the running sum ``ℓ`` of ``exp(score - m)`` and the running
weighted sum of values ``o``; a new block with maximum ``m'`` rescales both by
``exp(m - max(m, m'))``. After ``p`` steps ``o / ℓ`` is exactly softmax attention over the
whole sequence, while no rank ever held more than two key/value blocks. With ``causal=True``
blocks from later positions (``(r - j) mod p > r``) are skipped and the own block is masked.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from zen import validate


def ring_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False
) -> torch.Tensor:
    """This rank's block of softmax attention over the whole, ring-distributed sequence.

    ``q``, ``k``, ``v``: ``(batch, heads, S / p, d_head)``, rank ``r`` holding positions
    ``r S/p … (r+1) S/p - 1``. Returns ``(batch, heads, S / p, d_head)``. Forward only.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        validate.tensor(t, name)
        if t.ndim != 4:
            raise ValueError(f"{name} must be (batch, heads, seq, d_head), got {tuple(t.shape)}")
    if k.shape != v.shape or q.shape != k.shape:
        raise ValueError(
            f"q, k and v must have one shape, got {tuple(q.shape)}, {tuple(k.shape)}, "
            f"{tuple(v.shape)}"
        )
    if not dist.is_initialized():
        raise RuntimeError("ring_attention needs an initialised process group")
    p, r = dist.get_world_size(), dist.get_rank()
    right, left = (r + 1) % p, (r - 1) % p
    scale = q.shape[-1] ** -0.5
    m = torch.full(
        q.shape[:-1] + (1,), float("-inf"), dtype=q.dtype, device=q.device
    )  # (b, h, s, 1) max
    ell = torch.zeros_like(m)  # (b, h, s, 1) running sum of exp(score - m)
    out = torch.zeros_like(q)  # (b, h, s, d) running sum of exp(score - m) · v
    kv = torch.stack([k, v]).contiguous()  # (2, b, h, s, d): one message per step
    for step in range(p):
        source = (r - step) % p  # whose block this rank holds now
        if step < p - 1:  # start passing it on before computing with it
            incoming = torch.empty_like(kv)
            requests = [dist.isend(kv, right), dist.irecv(incoming, left)]
        if not causal or source <= r:
            scores = q @ kv[0].transpose(-2, -1) * scale  # (b, h, s, s)
            if causal and source == r:
                future = torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device).triu(1)
                scores = scores.masked_fill(future, float("-inf"))
            m_new = torch.maximum(m, scores.amax(-1, keepdim=True))
            rescale = torch.exp(m - m_new)  # 0 on the first block (m = -inf)
            weights = torch.exp(scores - m_new)
            ell = ell * rescale + weights.sum(-1, keepdim=True)
            out = out * rescale + weights @ kv[1]
            m = m_new
        if step < p - 1:
            for request in requests:
                request.wait()
            kv = incoming
    return out / ell
