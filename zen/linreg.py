"""Learning as optimisation, on linear regression.

Model ``ŷ = x @ w + b`` with ``x`` ``(n, d)``, ``w`` ``(d,)``, ``b`` a scalar; loss the mean
squared error. Three ways to the same minimum:

* :func:`closed_form` solves the normal equations (least squares) exactly;
* :func:`gradient_descent` follows the hand-derived gradient :func:`mse_grad`;
* ``torch.autograd`` + ``torch.optim.SGD`` (in the chapter) computes the same gradient for us.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from zen import validate


def _check_xy(x: torch.Tensor, y: torch.Tensor) -> None:
    validate.ndim(x, 2, "x", "(n, features)")
    validate.ndim(y, 1, "y", "(n,)")
    validate.floating(x, "x")
    validate.floating(y, "y")
    validate.same_size(x, y, 0, "x", "y")


def predict(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | float) -> torch.Tensor:
    """``x @ w + b``: ``(n, d) @ (d,) -> (n,)``."""
    return x @ w + b


def mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error ``(1/n) Σ (ŷ_i − y_i)²`` of two ``(n,)`` tensors."""
    if pred.shape != y.shape:
        raise ValueError(
            f"pred and y must have the same shape, got {tuple(pred.shape)} and {tuple(y.shape)}"
        )
    return ((pred - y) ** 2).mean()


def mse_grad(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the MSE with respect to ``w`` and ``b``.

    With residual ``r = x @ w + b − y``: ``∂L/∂w = (2/n) xᵀ r`` ``(d,)`` and ``∂L/∂b = (2/n) Σ r``.
    """
    _check_xy(x, y)
    r = predict(x, w, b) - y  # (n,)
    n = len(y)
    return 2.0 / n * (x.T @ r), 2.0 / n * r.sum()


def closed_form(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares ``(w, b)`` from the normal equations ``(Xᵀ X) θ = Xᵀ y`` with ``X = [x, 1]``.

    Solved with ``torch.linalg.lstsq`` (a QR-based solver; numerically safer than inverting
    ``Xᵀ X``). Returns ``w`` ``(d,)`` and ``b`` (0-D).
    """
    _check_xy(x, y)
    design = torch.cat(
        [x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], dim=1
    )  # (n, d+1)
    theta = torch.linalg.lstsq(design, y.unsqueeze(1)).solution.squeeze(1)  # (d+1,)
    return theta[:-1], theta[-1]


@dataclass
class GDResult:
    """Outcome of :func:`gradient_descent`: final parameters, the path and the loss per step."""

    w: torch.Tensor
    b: torch.Tensor
    path: torch.Tensor  # (steps + 1, d + 1): [w, b] before every step and after the last
    losses: torch.Tensor  # (steps + 1,)

    @property
    def diverged(self) -> bool:
        """True when the loss became non-finite or grew over the run."""
        return bool(not torch.isfinite(self.losses).all() or self.losses[-1] > self.losses[0])


def gradient_descent(
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    steps: int,
    w0: torch.Tensor | None = None,
    b0: float = 0.0,
) -> GDResult:
    """Full-batch gradient descent ``θ ← θ − lr · ∇L(θ)`` on the MSE, by hand (no autograd)."""
    _check_xy(x, y)
    validate.positive_int(steps, "steps")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    w = torch.zeros(x.shape[1], dtype=x.dtype, device=x.device) if w0 is None else w0.clone()
    b = torch.tensor(float(b0), dtype=x.dtype, device=x.device)
    path, losses = [], []
    with torch.no_grad():
        for _ in range(steps):
            path.append(torch.cat([w, b.reshape(1)]))
            losses.append(mse(predict(x, w, b), y))
            gw, gb = mse_grad(x, y, w, b)
            w, b = w - lr * gw, b - lr * gb
        path.append(torch.cat([w, b.reshape(1)]))
        losses.append(mse(predict(x, w, b), y))
    return GDResult(w, b, torch.stack(path), torch.stack(losses))


def max_stable_lr(x: torch.Tensor) -> float:
    """Largest learning rate for which gradient descent on the MSE converges: ``2 / λ_max``.

    The MSE's Hessian is ``H = (2/n) Xᵀ X`` with ``X = [x, 1]``; gradient descent is stable
    exactly when ``lr < 2 / λ_max(H)``.
    """
    validate.ndim(x, 2, "x", "(n, features)")
    design = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], dim=1)
    hessian = 2.0 / len(x) * design.T @ design
    return float(2.0 / torch.linalg.eigvalsh(hessian).max())
