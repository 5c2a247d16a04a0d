"""Element-wise activation functions by name, shared by every model that lets you choose one.

``ACTIVATIONS[name](x)`` has the shape of ``x``::

    relu(x)      = max(x, 0)
    gelu(x)      = x · Φ(x)                                   (exact; BERT)
    gelu_tanh(x) = x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))  (GPT-2's "gelu_new")
    silu(x)      = x · σ(x)                                   (Llama's SwiGLU gate)
    leaky_relu(x) = max(x, 0.2 x)                             (the DCGAN slope)

Hugging Face configs name them differently (``HF_NAMES``); :func:`from_hf` translates.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from zen import validate

__all__ = ["ACTIVATIONS", "HF_NAMES", "get", "from_hf", "Activation"]

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.2),
}

#: Hugging Face's ``hidden_act`` / ``activation_function`` names → zen's names.
HF_NAMES = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
            "relu": "relu", "silu": "silu", "swish": "silu"}  # fmt: skip


def get(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function called ``name``; ``ValueError`` naming the choices for an unknown name."""
    return ACTIVATIONS[validate.one_of(name, sorted(ACTIVATIONS), "activation")]


def from_hf(name: object, field: str = "hidden_act") -> str:
    """zen's name for a Hugging Face activation name (``field``: the config entry, for errors)."""
    if not isinstance(name, str) or name not in HF_NAMES:
        raise ValueError(f"{field} {name!r} is not supported; expected one of {sorted(HF_NAMES)}")
    return HF_NAMES[name]


class Activation(nn.Module):
    """An activation as a module (for ``nn.Sequential``): ``(...) → (...)``."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.fn, self.name = get(name), name

    def extra_repr(self) -> str:
        return repr(self.name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)
