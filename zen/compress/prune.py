"""Pruning: remove weights (unstructured) or whole hidden units (structured).

* :func:`magnitude_masks` — keep the largest-|w| weights, ranked over the whole model
  (``scope="global"``) or within each layer (``scope="layer"``), as in Han et al. (2015).
* :func:`apply_masks` — zero the pruned weights and keep them at zero while fine-tuning
  (a gradient hook multiplies every gradient by the mask).
* :func:`prune_hidden_units` — structured pruning of a ``Linear → act → Linear`` pair: drop
  the hidden units with the smallest L2 norm and return *smaller dense* layers, which is
  what makes a CPU/GPU actually run faster.

Unstructured sparsity shrinks the number of non-zero weights but not the dense matmul
that executes them; only structured pruning (or sparse kernels) turns it into speed.
"""

from __future__ import annotations

import torch
from torch import nn

from zen import validate


def prunable(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weight matrices/kernels of ``model`` (parameters named ``*weight`` with ndim ≥ 2)."""
    return {n: p for n, p in model.named_parameters() if n.endswith("weight") and p.ndim >= 2}


def magnitude_masks(
    model: nn.Module, sparsity: float, scope: str = "global"
) -> dict[str, torch.Tensor]:
    """Boolean keep-masks (same shape as each weight) removing a ``sparsity`` share of weights.

    Args:
        sparsity: share of weights to remove, in ``[0, 1)``.
        scope: ``"global"`` ranks |w| across all layers together (layers with many small
            weights lose more); ``"layer"`` removes the same share from every layer.
    """
    validate.in_range(sparsity, "sparsity", 0.0, 1.0)
    if sparsity == 1.0:
        raise ValueError("sparsity must be < 1 (removing every weight leaves no model), got 1.0")
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    weights = prunable(model)
    if not weights:
        raise ValueError(
            "model has no prunable weights (parameters named '*weight' with ndim >= 2)"
        )

    def threshold(values: torch.Tensor) -> torch.Tensor:
        k = int(round(sparsity * values.numel()))  # number of weights to remove
        if k == 0:
            return values.new_tensor(-1.0)  # nothing removed: every |w| > -1
        return values.kthvalue(k).values  # the k-th smallest |w| is removed, larger ones kept

    if scope == "global":
        t = threshold(torch.cat([p.detach().abs().flatten() for p in weights.values()]))
        return {n: p.detach().abs() > t for n, p in weights.items()}
    return {n: p.detach().abs() > threshold(p.detach().abs().flatten()) for n, p in weights.items()}


def apply_masks(
    model: nn.Module, masks: dict[str, torch.Tensor]
) -> list[torch.utils.hooks.RemovableHandle]:
    """Zero the masked-out weights in place and mask their gradients from now on.

    Returns the hook handles; call ``h.remove()`` on each to let the weights grow back.
    With SGD or Adam(W) a weight whose gradient is always zero stays exactly zero.
    """
    params = dict(model.named_parameters())
    handles = []
    for name, mask in masks.items():
        if name not in params:
            raise KeyError(f"mask for unknown parameter {name!r}; model has {sorted(params)}")
        p = params[name]
        if mask.shape != p.shape:
            raise ValueError(
                f"mask for {name} must have shape {tuple(p.shape)}, got {tuple(mask.shape)}"
            )
        keep = mask.to(device=p.device, dtype=p.dtype)
        with torch.no_grad():
            p.mul_(keep)
        handles.append(p.register_hook(lambda g, keep=keep: g * keep))
    return handles


def sparsity(model: nn.Module) -> float:
    """Share of exactly-zero entries among the prunable weights of ``model``."""
    weights = prunable(model).values()
    total = sum(p.numel() for p in weights)
    if total == 0:
        raise ValueError("model has no prunable weights")
    return sum((p == 0).sum().item() for p in weights) / total


def nonzero_parameters(model: nn.Module) -> int:
    """Number of non-zero parameters (what a sparse format would store)."""
    return sum(int((p != 0).sum().item()) for p in model.parameters())


def prune_hidden_units(
    fc_in: nn.Linear, fc_out: nn.Linear, keep: int
) -> tuple[nn.Linear, nn.Linear]:
    """Structured pruning of ``fc_out(act(fc_in(x)))``: keep the ``keep`` strongest hidden units.

    A hidden unit ``j`` owns row ``j`` of ``fc_in.weight`` (shape ``(hidden, d_in)``), its bias
    and column ``j`` of ``fc_out.weight`` (shape ``(d_out, hidden)``). Units are scored by
    ``‖fc_in.weight[j]‖₂ · ‖fc_out.weight[:, j]‖₂`` and the lowest are removed.

    Returns new layers of shapes ``(keep, d_in)`` and ``(d_out, keep)``; the activation
    between them must be element-wise (ReLU, GELU, …) for the result to be exact on the kept units.
    """
    if not isinstance(fc_in, nn.Linear) or not isinstance(fc_out, nn.Linear):
        raise TypeError(
            f"fc_in and fc_out must be nn.Linear, got {type(fc_in).__name__} "
            f"and {type(fc_out).__name__}"
        )
    hidden = fc_in.out_features
    if fc_out.in_features != hidden:
        raise ValueError(
            f"fc_out.in_features must equal fc_in.out_features={hidden}, got {fc_out.in_features}"
        )
    validate.positive_int(keep, "keep")
    if keep > hidden:
        raise ValueError(f"keep must be <= the {hidden} hidden units, got {keep}")
    score = fc_in.weight.detach().norm(dim=1) * fc_out.weight.detach().norm(dim=0)  # (hidden,)
    idx = score.topk(keep).indices.sort().values
    return keep_outputs(fc_in, idx), keep_inputs(fc_out, idx)


def keep_outputs(linear: nn.Linear, rows: torch.Tensor) -> nn.Linear:
    """A smaller ``nn.Linear`` with only the output features ``rows`` (weight rows and bias)."""
    new = nn.Linear(linear.in_features, len(rows), bias=linear.bias is not None).to(linear.weight)
    with torch.no_grad():
        new.weight.copy_(linear.weight[rows])
        if linear.bias is not None:
            new.bias.copy_(linear.bias[rows])
    return new


def keep_inputs(linear: nn.Linear, cols: torch.Tensor) -> nn.Linear:
    """A smaller ``nn.Linear`` reading only the input features ``cols`` (bias unchanged)."""
    new = nn.Linear(len(cols), linear.out_features, bias=linear.bias is not None).to(linear.weight)
    with torch.no_grad():
        new.weight.copy_(linear.weight[:, cols])
        if linear.bias is not None:
            new.bias.copy_(linear.bias)
    return new
