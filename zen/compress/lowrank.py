"""Low-rank factorisation: replace a ``Linear`` ``W (out, in)`` by two thin ones, ``U_r (out, r)``
and ``V_r (r, in)``, from the truncated SVD ``W ≈ U_r Σ_r V_rᵀ``.

By Eckart–Young this is the best rank-``r`` approximation in Frobenius norm, with error
``sqrt(Σ_{i>r} σ_i²)``. It saves parameters only when ``r (in + out) < in · out``.
"""

from __future__ import annotations

import torch
from torch import nn

from zen import validate


def svd_factorize(linear: nn.Linear, rank: int) -> nn.Sequential:
    """``nn.Sequential(Linear(in, r, bias=False), Linear(r, out))`` with ``W ≈ second.W @ first.W``.

    The singular values are split evenly (``√σ`` to each factor) so both factors are well scaled.
    """
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be nn.Linear, got {type(linear).__name__}")
    validate.positive_int(rank, "rank")
    out_f, in_f = linear.weight.shape
    if rank > min(out_f, in_f):
        raise ValueError(
            f"rank must be <= min(out, in) = {min(out_f, in_f)} for a {out_f}x{in_f} weight, "
            f"got {rank}"
        )
    u, s, vh = torch.linalg.svd(
        linear.weight.detach().float(), full_matrices=False
    )  # (out,k) (k,) (k,in)
    root = s[:rank].sqrt()
    first = nn.Linear(in_f, rank, bias=False)
    second = nn.Linear(rank, out_f, bias=linear.bias is not None)
    with torch.no_grad():
        first.weight.copy_(root[:, None] * vh[:rank])  # (r, in)
        second.weight.copy_(u[:, :rank] * root)  # (out, r)
        if linear.bias is not None:
            second.bias.copy_(linear.bias)
    return nn.Sequential(first, second).to(linear.weight)


def lowrank_parameters(out_features: int, in_features: int, rank: int) -> int:
    """Weights of the factorised layer, ``r · (in + out)`` (bias not counted)."""
    return rank * (in_features + out_features)
