"""Backpropagation by hand for a 2-layer MLP.

``x (n, d_in) → z1 = x W1 + b1 → h = act(z1) → logits = h W2 + b2 (n, d_out)``, trained with
softmax cross-entropy. :class:`TwoLayerMLP` computes the forward pass, caches what the backward
pass needs, and returns hand-derived gradients; the chapter checks them against autograd.

The key identity: for ``p = softmax(logits)`` and one-hot ``y``, the gradient of the mean
cross-entropy with respect to the logits is ``(p − y) / n`` (:func:`softmax_cross_entropy`).
The binary case is the same identity with ``p = σ(logit)`` (:func:`bce_with_logits`).
"""

from __future__ import annotations

import math

import torch

from zen import validate

ACTIVATIONS = ("relu", "tanh", "sigmoid")


def softmax_cross_entropy(
    logits: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and its gradient: ``logits`` ``(n, classes)``, labels ``y`` ``(n,)``.

    Returns ``(loss, dlogits)`` with ``dlogits = (softmax(logits) − onehot(y)) / n``.
    Uses the log-sum-exp shift, so large logits do not overflow.
    """
    validate.ndim(logits, 2, "logits", "(n, classes)")
    validate.ndim(y, 1, "y", "(n,)")
    validate.same_size(logits, y, 0, "logits", "y")
    if y.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"y must hold integer class labels, got {y.dtype}")
    n, classes = logits.shape
    if len(y) and (y.min() < 0 or y.max() >= classes):
        raise ValueError(
            f"labels must be in [0, {classes - 1}], got range [{int(y.min())}, {int(y.max())}]"
        )
    shifted = logits - logits.max(dim=1, keepdim=True).values
    log_p = shifted - shifted.exp().sum(dim=1, keepdim=True).log()  # (n, classes)
    loss = -log_p[torch.arange(n), y].mean()
    onehot = torch.zeros_like(logits).scatter_(1, y.long().unsqueeze(1), 1.0)
    return loss, (log_p.exp() - onehot) / n


def bce_with_logits(logit: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean binary cross-entropy of ``σ(logit)`` against ``y ∈ {0, 1}`` and its gradient.

    ``logit`` and ``y`` are both ``(n,)``; the gradient is ``(σ(logit) − y) / n``.
    """
    if logit.shape != y.shape:
        raise ValueError(
            f"logit and y must have the same shape, got {tuple(logit.shape)} and {tuple(y.shape)}"
        )
    # log σ(z) = −softplus(−z), log(1 − σ(z)) = −softplus(z): stable for large |z|
    loss = (
        y * torch.nn.functional.softplus(-logit) + (1 - y) * torch.nn.functional.softplus(logit)
    ).mean()
    return loss, (torch.sigmoid(logit) - y) / len(y)


def _act(z: torch.Tensor, name: str) -> torch.Tensor:
    if name == "relu":
        return z.clamp_min(0)
    if name == "tanh":
        return z.tanh()
    return z.sigmoid()


def _act_grad(z: torch.Tensor, h: torch.Tensor, name: str) -> torch.Tensor:
    """``act'(z)`` expressed with the cached ``z`` and ``h = act(z)``."""
    if name == "relu":
        return (z > 0).to(z.dtype)
    if name == "tanh":
        return 1 - h**2
    return h * (1 - h)


class TwoLayerMLP:
    """A 2-layer perceptron with a hand-written backward pass (no ``nn.Module``, no autograd).

    Parameters (plain tensors): ``W1 (d_in, d_hidden)``, ``b1 (d_hidden,)``,
    ``W2 (d_hidden, d_out)``, ``b2 (d_out,)``; initialised with He (ReLU) or Xavier scaling.
    """

    def __init__(
        self,
        d_in: int,
        d_hidden: int,
        d_out: int,
        activation: str = "relu",
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        for name, value in (("d_in", d_in), ("d_hidden", d_hidden), ("d_out", d_out)):
            validate.positive_int(value, name)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.activation = activation
        gain = math.sqrt(2.0) if activation == "relu" else 1.0

        def init(fan_in: int, fan_out: int) -> torch.Tensor:
            w = (
                torch.randn(fan_in, fan_out, generator=generator, dtype=dtype)
                * gain
                / math.sqrt(fan_in)
            )
            return w.to(device)

        self.params: dict[str, torch.Tensor] = {
            "W1": init(d_in, d_hidden),
            "b1": torch.zeros(d_hidden, dtype=dtype, device=device),
            "W2": init(d_hidden, d_out),
            "b2": torch.zeros(d_out, dtype=dtype, device=device),
        }

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return ``logits (n, d_out)`` and the cache ``{x, z1, h}`` for :meth:`backward`."""
        p = self.params
        validate.ndim(x, 2, "x", "(n, d_in)")
        if x.shape[1] != p["W1"].shape[0]:
            raise ValueError(f"x must have {p['W1'].shape[0]} features, got shape {tuple(x.shape)}")
        z1 = x @ p["W1"] + p["b1"]  # (n, d_hidden)
        h = _act(z1, self.activation)
        logits = h @ p["W2"] + p["b2"]  # (n, d_out)
        return logits, {"x": x, "z1": z1, "h": h}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[0]

    def backward(
        self, cache: dict[str, torch.Tensor], dlogits: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Gradients of the loss for every parameter, given ``dlogits = ∂L/∂logits`` ``(n, d_out)``.

        The chain rule, layer by layer::

            dW2 = hᵀ dlogits          db2 = Σ_n dlogits
            dh  = dlogits W2ᵀ          dz1 = dh ⊙ act'(z1)
            dW1 = xᵀ dz1               db1 = Σ_n dz1
        """
        p = self.params
        dW2 = cache["h"].T @ dlogits  # (d_hidden, d_out)
        db2 = dlogits.sum(0)
        dh = dlogits @ p["W2"].T  # (n, d_hidden)
        dz1 = dh * _act_grad(cache["z1"], cache["h"], self.activation)
        dW1 = cache["x"].T @ dz1  # (d_in, d_hidden)
        db1 = dz1.sum(0)
        return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}

    def loss_and_grads(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward, softmax cross-entropy and backward in one call."""
        logits, cache = self.forward(x)
        loss, dlogits = softmax_cross_entropy(logits, y)
        return loss, self.backward(cache, dlogits)

    def sgd_step(self, grads: dict[str, torch.Tensor], lr: float) -> None:
        """``θ ← θ − lr · ∂L/∂θ`` for every parameter."""
        for name, g in grads.items():
            self.params[name] -= lr * g
