"""Parameter-efficient fine-tuning: LoRA and bottleneck adapters.

* :class:`LoRALinear` (Hu et al., 2021): a frozen ``W`` plus a trainable low-rank update,
  ``y = x Wᵀ + (α/r) · x Aᵀ Bᵀ`` with ``A (r, in)`` random and ``B (out, r)`` zero, so training
  starts from the pre-trained function. :meth:`LoRALinear.merge` folds ``(α/r) B A`` into ``W``
  (no inference cost); :meth:`LoRALinear.unmerge` takes it out again.
* :class:`Adapter` (Houlsby et al., 2019): ``h + up(act(down(h)))`` with ``up`` zero-initialised,
  inserted after a frozen layer.
* :func:`add_lora`, :func:`trainable_parameters`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zen import validate
from zen.swap import swap_linears


class LoRALinear(nn.Module):
    """Wrap ``base`` (an ``nn.Linear``, frozen) with a rank-``r`` update scaled by ``alpha / r``.

    Input ``(..., in)``, output ``(..., out)``.
    Trainable: ``lora_A (r, in)`` and ``lora_B (out, r)``.
    """

    def __init__(self, base: nn.Linear, r: int = 4, alpha: float = 8.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"base must be nn.Linear, got {type(base).__name__}")
        validate.positive_int(r, "r")
        if r > min(base.in_features, base.out_features):
            raise ValueError(
                f"r must be <= min(in, out) = {min(base.in_features, base.out_features)} "
                f"for a {base.out_features}x{base.in_features} layer, got {r}"
            )
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}")
        self.base, self.r, self.alpha = base, r, float(alpha)
        for p in base.parameters():
            p.requires_grad_(False)
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(
            torch.zeros(base.out_features, r, device=w.device, dtype=w.dtype)
        )
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear; B = 0 makes ΔW = 0
        self.merged = False

    @property
    def scaling(self) -> float:
        return self.alpha / self.r

    def delta_weight(self) -> torch.Tensor:
        """``(α/r) · B A`` of shape ``(out, in)``."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged:
            return y
        return y + self.scaling * F.linear(
            F.linear(x, self.lora_A), self.lora_B
        )  # (..., r) -> (..., out)

    @torch.no_grad()
    def merge(self) -> None:
        """``W ← W + (α/r) B A``; the forward pass is then a plain ``Linear``."""
        if self.merged:
            raise RuntimeError("LoRA weights are already merged")
        self.base.weight += self.delta_weight()
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """``W ← W − (α/r) B A`` (undo :meth:`merge`, e.g. to keep training or swap adapters)."""
        if not self.merged:
            raise RuntimeError("LoRA weights are not merged")
        self.base.weight -= self.delta_weight()
        self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, merged={self.merged}"


class Adapter(nn.Module):
    """Bottleneck adapter ``h + W_up · act(W_down · h)``, ``(…, d) → (…, d)``; identity at init."""

    def __init__(self, d: int, bottleneck: int):
        super().__init__()
        validate.positive_int(d, "d")
        validate.positive_int(bottleneck, "bottleneck")
        if bottleneck > d:
            raise ValueError(f"bottleneck must be <= d={d} (it is a bottleneck), got {bottleneck}")
        self.down, self.up = nn.Linear(d, bottleneck), nn.Linear(bottleneck, d)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(F.gelu(self.down(h)))


def add_lora(
    model: nn.Module, r: int = 4, alpha: float = 8.0, names: tuple[str, ...] | None = None
) -> nn.Module:
    """Freeze ``model`` and wrap its ``nn.Linear`` children (those named in ``names``, or all) in
    :class:`LoRALinear`, in place. Only the LoRA factors stay trainable."""
    for p in model.parameters():
        p.requires_grad_(False)
    return swap_linears(model, lambda linear: LoRALinear(linear, r, alpha), names)


def trainable_parameters(model: nn.Module) -> int:
    """Number of parameters with ``requires_grad``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
