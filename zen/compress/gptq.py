"""GPTQ (Frantar et al., 2023): quantize a layer's columns one by one, feeding the error back.

For a linear layer with calibration inputs ``X (n, in)``, minimise the output error
``‖X Wᵀ − X Ŵᵀ‖²`` over quantized ``Ŵ``. Its Hessian in each row of ``W`` is
``H = 2 XᵀX / n`` (``in × in``), the same for every row. Quantizing column ``i`` to ``q_i`` costs
``(w_i − q_i)² / [H⁻¹]_ii``, and the remaining columns absorb it optimally (OBS)::

    e = (W[:, i] − q_i) / U[i, i]          U = upper Cholesky factor of H⁻¹
    W[:, i+1:] −= e ⊗ U[i, i+1:]

``H`` is damped (``H + λ·mean(diag H)·I``) so that it is invertible. With ``H = I`` the update
is zero and GPTQ is round-to-nearest; with correlated inputs it lowers the output error.
Scales are per channel (computed once) or per group (computed when the group's first column
is reached, from the already-updated weights).

With ``act_order`` the columns are visited in order of decreasing ``H_ii`` (the inputs with the
most energy first, while many columns remain to absorb their error) and groups are formed in
that order, so a kernel needs each column's group index (``g_idx`` in GPTQ's code).
"""

from __future__ import annotations

import torch

from zen import validate
from zen.compress.rtn import check_bits, group_scales


def calibration_hessian(x: torch.Tensor) -> torch.Tensor:
    """``2 XᵀX / n`` for inputs ``x (..., in)`` flattened to ``(n, in)``; float64 for accuracy."""
    validate.floating(x, "x")
    x = x.detach().reshape(-1, x.shape[-1]).double()
    if x.shape[0] == 0:
        raise ValueError("calibration data is empty: need at least one input row")
    return 2 * x.T @ x / x.shape[0]


def gptq_quantize(
    w: torch.Tensor,
    hessian: torch.Tensor,
    bits: int = 4,
    group_size: int | None = None,
    damp: float = 0.01,
    act_order: bool = False,
) -> torch.Tensor:
    """The GPTQ-quantized (dequantized) weight ``Ŵ (out, in)`` for ``w (out, in)``.

    Args:
        hessian: ``(in, in)`` from :func:`calibration_hessian`.
        group_size: ``None`` for one scale per output channel, else one per ``group_size``
            consecutive input columns of each row.
        damp: ``λ``, the share of the mean diagonal added to ``H``.
        act_order: quantize columns in order of decreasing ``H_ii`` instead of left to right.
    """
    validate.floating(w, "w")
    validate.ndim(w, 2, "w", "(out, in)")
    check_bits(bits)
    n_in = w.shape[1]
    if hessian.shape != (n_in, n_in):
        raise ValueError(f"hessian must be ({n_in}, {n_in}) for w {tuple(w.shape)}, got "
                         f"{tuple(hessian.shape)}")  # fmt: skip
    validate.in_range(damp, "damp", 0.0, 1.0)
    if group_size is not None:
        validate.positive_int(group_size, "group_size")
        if n_in % group_size:
            raise ValueError(f"group_size must divide the {n_in} input columns, got {group_size}")
    W = w.detach().double().clone()
    H = hessian.detach().double().clone()
    dead = torch.diagonal(H) == 0  # inputs that never fire: their weights do not matter
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H += damp * torch.diagonal(H).mean() * torch.eye(n_in, dtype=H.dtype, device=H.device)
    order = torch.arange(n_in, device=H.device)
    if act_order:
        order = torch.argsort(torch.diagonal(H), descending=True, stable=True)
        W, H = W[:, order], H[order][:, order]
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    qmax = 2 ** (bits - 1) - 1
    scale = None if group_size is not None else group_scales(W, bits, None).double()[:, 0]
    Q = torch.zeros_like(W)
    for i in range(n_in):
        if group_size is not None and i % group_size == 0:
            scale = group_scales(W[:, i : i + group_size], bits, group_size).double()[:, 0]
        q = torch.round(W[:, i] / scale).clamp(-qmax, qmax) * scale  # (out,)
        Q[:, i] = q
        err = (W[:, i] - q) / U[i, i]
        W[:, i + 1 :] -= err[:, None] * U[i, i + 1 :][None, :]  # error feedback
    Q[:, order] = Q.clone()  # back to the original column order
    return Q.to(w.dtype)


def layer_error(w: torch.Tensor, w_hat: torch.Tensor, x: torch.Tensor) -> float:
    """Relative output error ``‖X Wᵀ − X Ŵᵀ‖ / ‖X Wᵀ‖`` on inputs ``x (..., in)``."""
    x = x.reshape(-1, x.shape[-1]).float()
    y = x @ w.float().T
    return ((y - x @ w_hat.float().T).norm() / y.norm()).item()
