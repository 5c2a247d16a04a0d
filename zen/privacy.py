"""Differential privacy for training: per-sample gradients, DP-SGD, its accountant, and the
membership-inference attack it defends against.

DP-SGD (Abadi et al. 2016) bounds each example's influence on a step, then hides it in noise.
For a batch B drawn by Poisson sampling (each of the N examples independently with rate q):

    gᵢ = ∇θ ℓ(f(xᵢ), yᵢ)                         per-sample gradients  (|B|, *θ.shape) each
    ḡᵢ = gᵢ · min(1, C / ‖gᵢ‖)                    clip to norm C (‖·‖ over all parameters)
    g̃ = (Σᵢ ḡᵢ + N(0, σ²C² I)) / (qN)             noise of std σC, mean over the expected size

One step is the subsampled Gaussian mechanism. Its Rényi DP (Mironov 2017) at integer order α
(Mironov, Talwar and Zhang 2019, §3.3):

    RDP(α) = 1/(α−1) · log Σₖ₌₀^α C(α,k) (1−q)^{α−k} q^k exp((k² − k) / (2σ²))

T steps compose additively (T · RDP(α)), and RDP converts to (ε, δ)-DP by Balle et al. 2020:

    ε = min_α  T·RDP(α) + log((α−1)/α) − (log δ + log α) / (α − 1)

The loss-threshold attack (Yeom et al. 2018) guesses "member" when an example's loss is low.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from zen import validate

Grads = dict[str, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_batch(x: torch.Tensor, y: torch.Tensor) -> None:
    validate.ndim_at_least(x, 2, "x", "(batch, *features)")
    validate.tensor(y, "y")
    validate.same_size(x, y, 0, "x", "y")


def per_sample_grads(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn = F.cross_entropy
) -> Grads:
    """Every example's gradient of ``loss_fn``, with ``torch.func``: ``vmap`` over the batch of
    ``grad`` of the one-example loss.

    Args:
        model: a module whose forward takes ``(B, *features)``; no batch-norm (examples must be
            independent).
        x: inputs ``(B, *features)``; y: targets ``(B, ...)``.
    Returns:
        ``{name: (B, *param.shape)}`` for every parameter that requires grad.
    """
    _check_batch(x, y)
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())

    def one_loss(p: Grads, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))  # a batch of one
        return loss_fn(out, yi.unsqueeze(0))

    return vmap(grad(one_loss), in_dims=(None, 0, 0))(params, x, y)


def clip_per_sample(grads: Grads, max_norm: float, stability: float = 1e-6) -> Grads:
    """Scale each example's gradient (the norm over all parameters together) to at most
    ``max_norm``: factor ``min(1, C / (‖gᵢ‖ + stability))``, as Opacus does.

    ``grads`` maps names to ``(B, *shape)``; the result has the same layout.
    """
    validate.positive(max_norm, "max_norm")
    if not grads:
        raise ValueError("grads must hold at least one parameter's per-sample gradients")
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads.values()], 1).norm(dim=1)  # (B,)
    factor = (max_norm / (norms + stability)).clamp(max=1.0)  # (B,)
    return {k: torch.einsum("b,b...->b...", factor, g) for k, g in grads.items()}


def dp_sgd_grads(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    max_norm: float,
    noise_multiplier: float,
    expected_batch_size: int | None = None,
    generator: torch.Generator | None = None,
    loss_fn: LossFn = F.cross_entropy,
) -> Grads:
    """The DP-SGD gradient: clipped per-sample gradients summed, Gaussian noise of std
    ``noise_multiplier · max_norm`` added, divided by ``expected_batch_size`` (default ``B``).

    Noise is drawn parameter by parameter in ``model.named_parameters()`` order with
    ``torch.normal(0, σC, shape, generator=generator)``, the order Opacus uses, so the same
    generator state gives Opacus's noise. Returns ``{name: param.shape}``.
    """
    if isinstance(noise_multiplier, bool) or not isinstance(noise_multiplier, (int, float)):
        raise TypeError(f"noise_multiplier must be a number, got {type(noise_multiplier)}")
    if not noise_multiplier >= 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier!r}")
    n = len(x) if expected_batch_size is None else expected_batch_size
    validate.positive_int(n, "expected_batch_size")
    clipped = clip_per_sample(per_sample_grads(model, x, y, loss_fn), max_norm)
    std = noise_multiplier * max_norm
    out = {}
    for name, g in clipped.items():
        total = g.sum(0)  # (*shape,)
        if std > 0:
            total = total + torch.normal(
                0.0, std, total.shape, generator=generator, device=total.device, dtype=total.dtype
            )
        out[name] = total / n
    return out


def dp_sgd_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    max_norm: float,
    noise_multiplier: float,
    expected_batch_size: int | None = None,
    generator: torch.Generator | None = None,
    loss_fn: LossFn = F.cross_entropy,
) -> None:
    """One DP-SGD update: write :func:`dp_sgd_grads` into ``.grad`` and step ``optimizer``."""
    grads = dp_sgd_grads(
        model, x, y, max_norm, noise_multiplier, expected_batch_size, generator, loss_fn
    )
    for name, p in model.named_parameters():
        if name in grads:
            p.grad = grads[name]
    optimizer.step()


def poisson_batch(n: int, rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of a Poisson-sampled batch: each of ``n`` examples kept with probability
    ``rate`` (the sampling the accountant assumes); a ``(k,)`` int64 tensor, ``k`` random."""
    n = validate.positive_int(n, "n")
    _check_rate(rate)
    return (torch.rand(n, generator=generator) < rate).nonzero().squeeze(1)


def _check_rate(q: float) -> None:
    if not 0.0 < q <= 1.0:
        raise ValueError(f"sampling rate must be in (0, 1], got {q!r}")


def _orders(orders: Iterable[int]) -> list[int]:
    orders = list(orders)
    if not orders or any(isinstance(a, bool) or not isinstance(a, int) or a < 2 for a in orders):
        raise ValueError(f"orders must be integers >= 2, got {orders!r}")
    return orders


def rdp_subsampled_gaussian(
    sampling_rate: float, noise_multiplier: float, orders: Iterable[int]
) -> list[float]:
    """Rényi DP of one step of the Poisson-subsampled Gaussian mechanism (sensitivity 1,
    noise std ``noise_multiplier``) at each integer order ``α ≥ 2``; computed in log space."""
    q, sigma = sampling_rate, noise_multiplier
    _check_rate(q)
    validate.positive(sigma, "noise_multiplier")
    out = []
    for a in _orders(orders):
        if q == 1.0:  # no subsampling: the Gaussian mechanism, α / (2σ²)
            out.append(a / (2 * sigma**2))
            continue
        terms = [
            math.lgamma(a + 1)
            - math.lgamma(k + 1)
            - math.lgamma(a - k + 1)  # log C(α, k)
            + k * math.log(q)
            + (a - k) * math.log1p(-q)
            + (k * k - k) / (2 * sigma**2)
            for k in range(a + 1)
        ]
        top = max(terms)
        log_a = top + math.log(sum(math.exp(t - top) for t in terms))  # log-sum-exp
        out.append(log_a / (a - 1))
    return out


def rdp_to_epsilon(orders: Iterable[int], rdp: Iterable[float], delta: float) -> tuple[float, int]:
    """(ε, best order) of an RDP curve at ``delta``, by Balle et al. 2020 (Theorem 21)."""
    orders, rdp = _orders(orders), list(rdp)
    if len(orders) != len(rdp):
        raise ValueError(f"orders and rdp must have the same length: {len(orders)}, {len(rdp)}")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    eps = [
        r + math.log((a - 1) / a) - (math.log(delta) + math.log(a)) / (a - 1)
        for a, r in zip(orders, rdp)
    ]
    best = min(range(len(eps)), key=eps.__getitem__)
    return eps[best], orders[best]


def epsilon(
    sampling_rate: float,
    noise_multiplier: float,
    steps: int,
    delta: float,
    orders: Iterable[int] = range(2, 64),
) -> float:
    """ε of ``steps`` DP-SGD steps at ``delta``: RDP composed over the steps, then converted."""
    steps = validate.positive_int(steps, "steps")
    orders = _orders(orders)
    rdp = [steps * r for r in rdp_subsampled_gaussian(sampling_rate, noise_multiplier, orders)]
    return rdp_to_epsilon(orders, rdp, delta)[0]


def example_losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each example's cross-entropy under ``model``, without grad; ``(B,)``."""
    _check_batch(x, y)
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


def membership_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The loss-threshold attack's score ``−ℓ(f(x), y)``: higher means "more likely a training
    member"; thresholding it at ``−τ`` guesses member when the loss is below τ. ``(B,)``."""
    return -example_losses(model, x, y)
