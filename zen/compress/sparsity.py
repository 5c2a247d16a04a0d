"""Semi-structured 2:4 sparsity and structured pruning of a transformer's FFN channels.

* **2:4** (NVIDIA Ampere's sparse tensor cores): in every group of 4 consecutive weights along
  the input dimension keep the 2 largest in magnitude. Exactly half the weights go, the pattern
  is regular enough for the hardware to skip them (about 2× on a supported GPU; no CPU gain).
* **FFN channels**: a gated FFN ``fc2(act(gate(x)) · fc1(x))`` has ``d_ff`` hidden channels;
  channel ``j`` owns row ``j`` of ``fc1`` and ``gate`` and column ``j`` of ``fc2``. Dropping the
  weakest channels leaves smaller dense matrices, which run faster on any hardware.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from zen import validate


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
    for name in ("fc1", "gate"):
        old = getattr(ffn, name)
        new = nn.Linear(old.in_features, keep, bias=old.bias is not None).to(old.weight)
        with torch.no_grad():
            new.weight.copy_(old.weight[idx])
            if old.bias is not None:
                new.bias.copy_(old.bias[idx])
        setattr(ffn, name, new)
    old = ffn.fc2
    new = nn.Linear(keep, old.out_features, bias=old.bias is not None).to(old.weight)
    with torch.no_grad():
        new.weight.copy_(old.weight[:, idx])
        if old.bias is not None:
            new.bias.copy_(old.bias)
    ffn.fc2 = new
