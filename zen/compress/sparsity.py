"""Semi-structured 2:4 sparsity and structured pruning of a transformer's FFN channels.

* **2:4** (NVIDIA Ampere's sparse tensor cores): in every group of 4 consecutive weights along
  the input dimension keep the 2 largest in magnitude. Exactly half the weights go, the pattern
  is regular enough for the hardware to skip them (about 2× on a supported GPU; no CPU gain).
* **FFN channels**: a gated FFN ``fc2(act(gate(x)) · fc1(x))`` has ``d_ff`` hidden channels;
  channel ``j`` owns row ``j`` of ``fc1`` and ``gate`` and column ``j`` of ``fc2``. Dropping the
  weakest channels leaves smaller dense matrices, which run faster on any hardware.
* **Attention heads** (Michel et al., 2019): head ``j`` owns ``d_head`` rows of ``q_proj`` and
  ``d_head`` columns of ``out_proj``; with grouped-query attention a key/value head serves
  ``n_heads / n_kv_heads`` query heads, so the unit that can be removed is that group.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from zen import validate
from zen.compress.prune import keep_inputs, keep_outputs


def mask_2_4(w: torch.Tensor) -> torch.Tensor:
    """Boolean keep-mask of ``w (out, in)``: the 2 largest |w| in each group of 4 inputs."""
    validate.floating(w, "w")
    validate.ndim(w, 2, "w", "(out, in)")
    if w.shape[1] % 4:
        raise ValueError(f"2:4 sparsity needs in_features divisible by 4, got {w.shape[1]}")
    groups = rearrange(w.detach().abs(), "o (n four) -> o n four", four=4)
    top = groups.topk(2, dim=-1).indices
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, top, True)
    return rearrange(keep, "o n four -> o (n four)")


def ffn_channel_scores(ffn: nn.Module, x_absmean: torch.Tensor | None = None) -> torch.Tensor:
    """Importance of each of the ``d_ff`` channels of a gated FFN (``fc1``, ``gate``, ``fc2``):
    ``‖fc1[j]‖ · ‖gate[j]‖ · ‖fc2[:, j]‖``, or, given the channels' mean |activation| on
    calibration data ``x_absmean (d_ff,)``, that times ``‖fc2[:, j]‖``."""
    fc2 = ffn.fc2.weight.detach()
    if x_absmean is not None:
        return x_absmean * fc2.norm(dim=0)
    return (
        ffn.fc1.weight.detach().norm(dim=1) * ffn.gate.weight.detach().norm(dim=1) * fc2.norm(dim=0)
    )


def prune_ffn_channels(ffn: nn.Module, keep: int, scores: torch.Tensor | None = None) -> None:
    """Keep the ``keep`` highest-scoring channels of a gated FFN, in place (smaller Linears)."""
    for name in ("fc1", "gate", "fc2"):
        if not isinstance(getattr(ffn, name, None), nn.Linear):
            raise TypeError(f"ffn must be a gated FeedForward with Linear '{name}'")
    d_ff = ffn.fc1.out_features
    validate.positive_int(keep, "keep")
    if keep > d_ff:
        raise ValueError(f"keep must be <= d_ff={d_ff}, got {keep}")
    scores = ffn_channel_scores(ffn) if scores is None else scores
    idx = scores.topk(keep).indices.sort().values
    ffn.fc1, ffn.gate = keep_outputs(ffn.fc1, idx), keep_outputs(ffn.gate, idx)
    ffn.fc2 = keep_inputs(ffn.fc2, idx)


def head_group_scores(
    attn: nn.Module, head_out_absmean: torch.Tensor | None = None
) -> torch.Tensor:
    """Importance of each key/value group of a :class:`zen.attention.MultiHeadAttention`.

    A group is one key/value head and the ``n_heads / n_kv_heads`` query heads that share it.
    Without data: the sum over its query heads of ``‖q_proj rows‖ · ‖out_proj columns‖``. Given
    the mean |output| of each query head's ``d_head`` channels on calibration data,
    ``head_out_absmean (n_heads, d_head)`` (the input of ``out_proj``, split by head): the sum
    of ``‖head_out_absmean[j] · out_proj[:, j]‖`` — what the head adds to the residual stream.
    Returns ``(n_kv_heads,)``.
    """
    h, h_kv, d = _heads(attn)
    w_o = rearrange(attn.out_proj.weight.detach(), "o (h d) -> h o d", h=h)  # (h, d_model, d)
    if head_out_absmean is None:
        w_q = rearrange(attn.q_proj.weight.detach(), "(h d) i -> h d i", h=h)
        per_head = w_q.flatten(1).norm(dim=1) * w_o.flatten(1).norm(dim=1)  # (h,)
    else:
        if tuple(head_out_absmean.shape) != (h, d):
            raise ValueError(
                f"head_out_absmean must be (n_heads, d_head) = ({h}, {d}), "
                f"got {tuple(head_out_absmean.shape)}"
            )
        per_head = (w_o * head_out_absmean[:, None, :]).flatten(1).norm(dim=1)  # (h,)
    return rearrange(per_head, "(g r) -> g r", g=h_kv).sum(dim=1)  # (h_kv,)


def prune_head_groups(attn: nn.Module, keep: int, scores: torch.Tensor | None = None) -> None:
    """Keep the ``keep`` highest-scoring key/value groups of an attention layer, in place.

    ``q_proj``, ``k_proj``, ``v_proj`` lose the rows and ``out_proj`` the columns of the dropped
    heads; ``n_heads`` and ``n_kv_heads`` shrink, ``d_head`` and ``d_model`` stay. The result
    equals the original with the dropped heads' ``out_proj`` columns set to zero.
    """
    h, h_kv, d = _heads(attn)
    validate.positive_int(keep, "keep")
    if keep > h_kv:
        raise ValueError(f"keep must be <= n_kv_heads={h_kv}, got {keep}")
    scores = head_group_scores(attn) if scores is None else scores
    if tuple(scores.shape) != (h_kv,):
        raise ValueError(f"scores must have one value per key/value group ({h_kv},), "
                         f"got {tuple(scores.shape)}")  # fmt: skip
    groups = scores.topk(keep).indices.sort().values  # (keep,) kept groups, in order
    r = h // h_kv
    q_heads = (groups[:, None] * r + torch.arange(r, device=groups.device)).flatten()
    q_rows = (q_heads[:, None] * d + torch.arange(d, device=groups.device)).flatten()
    kv_rows = (groups[:, None] * d + torch.arange(d, device=groups.device)).flatten()
    attn.q_proj = keep_outputs(attn.q_proj, q_rows)
    attn.k_proj, attn.v_proj = (
        keep_outputs(attn.k_proj, kv_rows),
        keep_outputs(attn.v_proj, kv_rows),
    )
    attn.out_proj = keep_inputs(attn.out_proj, q_rows)
    attn.n_heads, attn.n_kv_heads = keep * r, keep


def _heads(attn: nn.Module) -> tuple[int, int, int]:
    """``(n_heads, n_kv_heads, d_head)`` of an attention layer, checked."""
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        if not isinstance(getattr(attn, name, None), nn.Linear):
            raise TypeError(f"attn must be a zen MultiHeadAttention with Linear '{name}'")
    h, h_kv, d = attn.n_heads, attn.n_kv_heads, attn.d_head
    if attn.q_proj.out_features != h * d or attn.k_proj.out_features != h_kv * d:
        raise ValueError("attn's projections do not match its n_heads, n_kv_heads and d_head")
    return h, h_kv, d
