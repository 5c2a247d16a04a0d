"""The two layers every block is made of besides attention: its norm and its FFN."""

from __future__ import annotations

import torch
from torch import nn

from zen import activations, validate


class RMSNorm(nn.Module):
    """Root-mean-square norm {cite}`zhang2019rmsnorm`: ``x / √(mean(x²) + eps) · weight``.

    LayerNorm without the mean subtraction and the bias. The statistic is computed in float32
    whatever the input dtype (a bf16 sum of squares loses digits), then cast back before the
    gain, as Llama does. Shapes: ``(..., d_model) → (..., d_model)``.
    """

    def __init__(self, d_model: int, eps: float = 1e-6) -> None:
        super().__init__()
        validate.positive_int(d_model, "d_model")
        validate.positive(eps, "eps")
        self.d_model, self.eps = d_model, eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def extra_repr(self) -> str:
        return f"{self.d_model}, eps={self.eps}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        validate.features(x, self.d_model, "x")
        h = x.float()  # (..., d) in float32
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)  # unit root-mean-square
        return self.weight * h.to(x.dtype)


class FeedForward(nn.Module):
    """Position-wise feed-forward network ``fc2(act(fc1(x)))``.

    With ``gated=True`` a third matrix ``gate`` multiplies in a gate, ``fc2(act(gate(x)) ⊙
    fc1(x))`` {cite}`shazeer2020glu` (SwiGLU for ``activation="silu"``; Hugging Face calls
    ``gate``, ``fc1``, ``fc2`` ``gate_proj``, ``up_proj``, ``down_proj``).
    Shapes: ``(..., d_model) → (..., d_ff) → (..., d_model)``.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        activation: str = "gelu",
        bias: bool = True,
        gated: bool = False,
    ) -> None:
        super().__init__()
        validate.positive_int(d_model, "d_model")
        validate.positive_int(d_ff, "d_ff")
        self.act = activations.get(activation)
        self.activation = activation
        self.fc1 = nn.Linear(d_model, d_ff, bias=bias)
        self.gate = nn.Linear(d_model, d_ff, bias=bias) if gated else None
        self.fc2 = nn.Linear(d_ff, d_model, bias=bias)

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}, gated={self.gate is not None}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate is None:
            return self.fc2(self.act(self.fc1(x)))  # (..., d) -> (..., d_ff) -> (..., d)
        return self.fc2(self.act(self.gate(x)) * self.fc1(x))  # (..., d) -> (..., d_ff) -> (..., d)
