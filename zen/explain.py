"""Attribution: which inputs a prediction depends on, and by how much.

Every method explains one scalar, the model's output ``F(x) = model(x)[target]``, with one
number per input feature:

    saliency            |∂F/∂x|  (or the signed gradient)                    Simonyan et al. 2014
    gradient × input    x ⊙ ∂F/∂x
    integrated grads    (x − x') ⊙ ∫₀¹ ∂F/∂x (x' + α(x − x')) dα     Sundararajan et al. 2017
    SmoothGrad          mean over n draws of ∂F/∂x (x + ε),  ε ~ N(0, σ²)    Smilkov et al. 2017
    occlusion           F(x) − F(x with a window set to the baseline), averaged per feature
    Shapley values      φᵢ = Σ_{S ∌ i} |S|!(M−|S|−1)!/M! · [v(S ∪ {i}) − v(S)]  Lundberg & Lee 2017
    kernel SHAP         the Shapley-kernel weighted least-squares fit of v(S) on 1[i ∈ S]
    attention rollout   R = Â_L ⋯ Â_1,  Â = ½(mean-over-heads A) + ½ I       Abnar & Zuidema 2020

Integrated gradients is *complete*: Σᵢ attrᵢ = F(x) − F(x') up to the quadrature error of the
integral, which shrinks as ``steps`` grows; :func:`integrated_gradients` can return that gap.
Shapley values (and kernel SHAP once every coalition is enumerated) are complete exactly, with
``v(S) = F(x on S, x' elsewhere)``.

    x (B, *features) ─ model ─▶ (B, C) ─ [target] ─▶ F (B,) ─ explain ─▶ attr (B, *features)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch

from zen import validate

Model = Callable[[torch.Tensor], torch.Tensor]
RIEMANN = ("left", "right", "middle", "trapezoid")


# ------------------------------------------------------------------------------ the scalar F
def _check_input(x: torch.Tensor, name: str = "x") -> None:
    validate.ndim_at_least(x, 2, name, "(batch, *features)")
    validate.floating(x, name)


def _baseline(x: torch.Tensor, baseline: torch.Tensor | float | None) -> torch.Tensor:
    """The reference input x': zeros by default, a number, one example (broadcast) or one a row."""
    if baseline is None or isinstance(baseline, (int, float)):
        return torch.full_like(x, 0.0 if baseline is None else float(baseline))
    validate.tensor(baseline, "baseline")
    if baseline.shape == x.shape[1:]:
        baseline = baseline.expand_as(x)
    if baseline.shape != x.shape:
        raise ValueError(
            f"baseline must have the input's shape {tuple(x.shape)} or one example's shape "
            f"{tuple(x.shape[1:])}, got {tuple(baseline.shape)}"
        )
    return baseline.to(x.dtype)


def output(model: Model, x: torch.Tensor, target: int | torch.Tensor | None = None) -> torch.Tensor:
    """The explained scalar per example, ``model(x)[b, target[b]]``: ``(B,)``.

    ``target`` is a class index, one index per example ``(B,)``, or ``None`` for a model whose
    output is already ``(B,)``.
    """
    out = model(x)
    if out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1 and target is None):
        if target is not None:
            raise ValueError(
                f"the model returns one number per example {tuple(out.shape)}; "
                f"pass target=None, got {target!r}"
            )
        return out.reshape(-1)
    if out.ndim != 2:
        raise ValueError(
            f"the model must return (batch,) or (batch, classes), got {tuple(out.shape)}"
        )
    if target is None:
        raise ValueError(
            f"the model returns {out.shape[1]} outputs per example: pass a target class"
        )
    index = torch.as_tensor(target, device=out.device).long().reshape(-1).expand(out.shape[0])
    if index.min() < 0 or index.max() >= out.shape[1]:
        raise ValueError(f"target must lie in [0, {out.shape[1]}), got {target!r}")
    return out.gather(1, index[:, None])[:, 0]  # (B,)


def gradient(
    model: Model, x: torch.Tensor, target: int | torch.Tensor | None = None
) -> torch.Tensor:
    """∂F/∂x per example (examples are independent: one backward of ΣF does it); shape of x."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(output(model, x, target).sum(), x)
    return grad


# ------------------------------------------------------------------------------ gradient methods
def saliency(
    model: Model, x: torch.Tensor, target: int | torch.Tensor | None = None, absolute: bool = True
) -> torch.Tensor:
    """Saliency map: ``|∂F/∂x|`` (``absolute=False``: the signed gradient). Shape of ``x``."""
    _check_input(x)
    grad = gradient(model, x, target)
    return grad.abs() if absolute else grad


def gradient_x_input(
    model: Model, x: torch.Tensor, target: int | torch.Tensor | None = None
) -> torch.Tensor:
    """``x ⊙ ∂F/∂x``: integrated gradients with a zero baseline for a model linear in x."""
    _check_input(x)
    return x.detach() * gradient(model, x, target)


def riemann(steps: int, method: str = "trapezoid") -> tuple[torch.Tensor, torch.Tensor]:
    """Points α ∈ [0, 1] and weights w of a quadrature rule with Σ w·g(α) ≈ ∫₀¹ g(α) dα.

    ``left``/``right``/``middle``: ``steps`` intervals of width 1/steps, one point each.
    ``trapezoid``: ``steps`` points 0, 1/(steps−1), …, 1 with weights 1/(steps−1), halved at
    the ends (the weights sum to 1, so a constant integrand is exact).
    """
    steps = validate.positive_int(steps, "steps")
    validate.one_of(method, RIEMANN, "method")
    if method == "trapezoid":
        if steps < 2:
            raise ValueError(f"the trapezoid rule needs steps >= 2, got {steps}")
        weights = torch.full((steps,), 1.0 / (steps - 1), dtype=torch.float64)
        weights[[0, -1]] /= 2
        return torch.linspace(0, 1, steps, dtype=torch.float64), weights
    start = {"left": 0.0, "middle": 0.5, "right": 1.0}[method]
    alphas = (torch.arange(steps, dtype=torch.float64) + start) / steps
    return alphas, torch.full((steps,), 1.0 / steps, dtype=torch.float64)


def integrated_gradients(
    model: Model,
    x: torch.Tensor,
    baseline: torch.Tensor | float | None = None,
    target: int | torch.Tensor | None = None,
    steps: int = 50,
    method: str = "trapezoid",
    return_delta: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Integrated gradients ``(x − x') ⊙ Σₖ wₖ ∂F/∂x (x' + αₖ(x − x'))`` (:func:`riemann`).

    With ``return_delta`` also the completeness gap per example, ``Σᵢ attrᵢ − (F(x) − F(x'))``
    ``(B,)``, which goes to 0 as ``steps`` grows.
    """
    _check_input(x)
    x = x.detach()
    x0 = _baseline(x, baseline)
    alphas, weights = riemann(steps, method)
    alphas, weights = alphas.to(x.device, x.dtype), weights.to(x.device, x.dtype)
    shape = (steps,) + (1,) * x.ndim
    path = x0 + alphas.view(shape) * (x - x0)  # (steps, B, *features)
    tgt = target
    if isinstance(target, torch.Tensor) and target.numel() > 1:
        tgt = target.repeat(steps)
    grads = gradient(model, path.flatten(0, 1), tgt).view_as(path)  # (steps, B, *features)
    attr = (x - x0) * (weights.view(shape) * grads).sum(0)  # (B, *features)
    if not return_delta:
        return attr
    return attr, completeness_delta(model, attr, x, x0, target)


def completeness_delta(
    model: Model,
    attributions: torch.Tensor,
    x: torch.Tensor,
    baseline: torch.Tensor | float | None = None,
    target: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """``Σᵢ attrᵢ − (F(x) − F(x'))`` per example ``(B,)``: zero for a complete method."""
    _check_input(x)
    validate.same_shape(attributions, x, "attributions", "x")
    x0 = _baseline(x, baseline)
    with torch.no_grad():
        gap = output(model, x, target) - output(model, x0, target)
    return attributions.flatten(1).sum(1) - gap


def smoothgrad(
    model: Model,
    x: torch.Tensor,
    target: int | torch.Tensor | None = None,
    n_samples: int = 25,
    sigma: float = 0.15,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """SmoothGrad: the mean gradient over ``n_samples`` noisy copies ``x + ε``, ``ε ~ N(0, σ²)``.

    ``noise`` ``(B, n_samples, *features)`` replaces the drawn ε (to reproduce a reference).
    """
    _check_input(x)
    n_samples = validate.positive_int(n_samples, "n_samples")
    validate.positive(sigma, "sigma")
    if noise is None:
        noise = sigma * torch.randn(
            (x.shape[0], n_samples) + x.shape[1:],
            generator=generator,
            dtype=x.dtype,
            device=x.device if generator is None else generator.device,
        )
        noise = noise.to(x.device)
    elif noise.shape != (x.shape[0], n_samples) + x.shape[1:]:
        raise ValueError(
            f"noise must be (batch, n_samples, *features) = "
            f"{(x.shape[0], n_samples) + tuple(x.shape[1:])}, got {tuple(noise.shape)}"
        )
    noisy = (x.detach()[:, None] + noise).flatten(0, 1)  # (B·n, *features)
    tgt = (
        target.repeat_interleave(n_samples)
        if isinstance(target, torch.Tensor) and target.numel() > 1
        else target
    )
    return gradient(model, noisy, tgt).view_as(noise).mean(1)  # (B, *features)


# ------------------------------------------------------------------------------ perturbation
def occlusion(
    model: Model,
    x: torch.Tensor,
    window: Sequence[int],
    stride: Sequence[int] | int = 1,
    target: int | torch.Tensor | None = None,
    baseline: float = 0.0,
) -> torch.Tensor:
    """Occlusion: slide a ``window`` over the features, set it to ``baseline``, record the drop
    ``F(x) − F(x_occluded)``; each feature gets the mean drop over the windows that cover it.

    ``window`` and ``stride`` have one entry per feature axis; the last window along an axis is
    cut at the edge when the stride does not divide the room left.
    """
    _check_input(x)
    window = tuple(window)
    stride = (stride,) * len(window) if isinstance(stride, int) else tuple(stride)
    feat = tuple(x.shape[1:])
    if len(window) != len(feat) or len(stride) != len(feat):
        raise ValueError(
            f"window and stride need one entry per feature axis {feat}, "
            f"got window={window}, stride={stride}"
        )
    for w, s, n in zip(window, stride, feat):
        validate.positive_int(w, "window")
        validate.positive_int(s, "stride")
        if w > n:
            raise ValueError(f"window {window} does not fit the features {feat}")
    starts = [range(0, math.ceil((n - w) / s) * s + 1, s) for n, w, s in zip(feat, window, stride)]
    with torch.no_grad():
        full = output(model, x, target)  # (B,)
        total, count = torch.zeros_like(x), torch.zeros(feat, dtype=x.dtype, device=x.device)
        for corner in itertools.product(*starts):
            region = (slice(None),) + tuple(slice(c, c + w) for c, w in zip(corner, window))
            occluded = x.clone()
            occluded[region] = baseline
            drop = full - output(model, occluded, target)  # (B,)
            total[region] += drop.view((-1,) + (1,) * len(feat))
            count[region[1:]] += 1
    return total / count


def coalition_values(
    model: Model,
    x: torch.Tensor,
    coalitions: torch.Tensor,
    baseline: torch.Tensor | float | None = None,
    target: int | torch.Tensor | None = None,
    feature_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``v(S) = F(x on S, x' elsewhere)`` for each coalition row ``(K, M)`` of 0/1: ``(B, K)``."""
    x0 = _baseline(x, baseline)
    mask = _feature_mask(x, feature_mask)
    keep = coalitions.to(x.device, x.dtype)[:, mask]  # (K, *features): 1 where x is kept
    mixed = x0[:, None] + keep[None] * (x - x0)[:, None]  # (B, K, *features)
    tgt = (
        target.repeat_interleave(len(coalitions))
        if isinstance(target, torch.Tensor) and target.numel() > 1
        else target
    )
    with torch.no_grad():
        return output(model, mixed.flatten(0, 1), tgt).view(x.shape[0], len(coalitions))


def _feature_mask(x: torch.Tensor, feature_mask: torch.Tensor | None) -> torch.Tensor:
    """Group ids ``0..M−1`` per feature (default: every feature its own player)."""
    if feature_mask is None:
        return torch.arange(x[0].numel(), device=x.device).view(x.shape[1:])
    if feature_mask.shape != x.shape[1:] or feature_mask.is_floating_point():
        raise ValueError(
            f"feature_mask must be an integer tensor of one example's shape "
            f"{tuple(x.shape[1:])}, got {feature_mask.dtype} {tuple(feature_mask.shape)}"
        )
    ids = feature_mask.unique()
    if not torch.equal(ids.cpu(), torch.arange(len(ids))):
        raise ValueError(f"feature_mask must number its groups 0..M-1, got ids {ids.tolist()}")
    return feature_mask.to(x.device).long()


def _players(x: torch.Tensor, feature_mask: torch.Tensor | None, limit: int) -> int:
    m = int(_feature_mask(x, feature_mask).max()) + 1
    if m > limit:
        raise ValueError(
            f"{m} players need 2^{m} coalitions: group the features with feature_mask "
            f"(at most {limit} players)"
        )
    return m


def _spread(phi: torch.Tensor, x: torch.Tensor, feature_mask: torch.Tensor | None) -> torch.Tensor:
    """Per-player values ``(B, M)`` → the shape of x (each feature gets its group's value)."""
    mask = _feature_mask(x, feature_mask)
    return phi[:, mask] if feature_mask is not None else phi.view_as(x)


def shapley_values(
    model: Model,
    x: torch.Tensor,
    baseline: torch.Tensor | float | None = None,
    target: int | torch.Tensor | None = None,
    feature_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact Shapley values by enumerating all 2^M coalitions of the M players (M ≤ 16).

    Returns ``(B, M)``: player ``m`` is feature group ``m`` of ``feature_mask`` (default: every
    feature). They sum to ``F(x) − F(x')`` exactly.
    """
    _check_input(x)
    m = _players(x, feature_mask, 16)
    coalitions = torch.tensor(list(itertools.product((0, 1), repeat=m)), dtype=torch.float64)
    v = coalition_values(model, x, coalitions, baseline, target, feature_mask).double()  # (B, 2^M)
    index = {tuple(int(c) for c in row): k for k, row in enumerate(coalitions)}
    size = coalitions.sum(1).long()
    fact = [math.factorial(k) for k in range(m + 1)]
    phi = torch.zeros(x.shape[0], m, dtype=torch.float64, device=x.device)
    for k, row in enumerate(coalitions.long().tolist()):
        for i in range(m):
            if row[i] == 0:
                with_i = index[tuple(row[:i] + [1] + row[i + 1 :])]
                weight = fact[size[k]] * fact[m - size[k] - 1] / fact[m]
                phi[:, i] += weight * (v[:, with_i] - v[:, k])
    return phi.to(x.dtype)


def kernel_shap(
    model: Model,
    x: torch.Tensor,
    baseline: torch.Tensor | float | None = None,
    target: int | torch.Tensor | None = None,
    feature_mask: torch.Tensor | None = None,
    n_samples: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Kernel SHAP: the linear model g(z) = φ₀ + Σ φᵢ zᵢ fitted to v(z) with the Shapley kernel
    π(z) = (M−1) / (C(M,|z|)·|z|·(M−|z|)), under φ₀ = v(∅) and Σφ = v(all) − v(∅).

    ``n_samples=None`` enumerates the 2^M − 2 proper coalitions (then φ are the exact Shapley
    values); otherwise coalitions are drawn from π (sizes ∝ (M−1)/(|z|(M−|z|))) and weighted
    equally. Returns ``(B, M)``.
    """
    _check_input(x)
    m = _players(x, feature_mask, 30 if n_samples else 16)
    if m < 2:
        raise ValueError(f"kernel SHAP needs at least 2 players, got {m}")
    sizes = torch.arange(1, m, dtype=torch.float64)
    if n_samples is None:
        z = torch.tensor(
            [c for c in itertools.product((0, 1), repeat=m) if 0 < sum(c) < m], dtype=torch.float64
        )
        s = z.sum(1)
        pi = (m - 1) / (
            torch.tensor([math.comb(m, int(k)) for k in s], dtype=torch.float64) * s * (m - s)
        )
    else:
        n_samples = validate.positive_int(n_samples, "n_samples")
        p_size = (m - 1) / (sizes * (m - sizes))
        drawn = sizes[
            torch.multinomial(p_size / p_size.sum(), n_samples, True, generator=generator)
        ]
        order = torch.rand(n_samples, m, generator=generator).argsort(1)
        z = (order < drawn[:, None]).double()  # a uniform subset of each drawn size
        pi = torch.ones(n_samples, dtype=torch.float64)
    ends = torch.stack([torch.zeros(m), torch.ones(m)]).double()
    v_ends = coalition_values(model, x, ends, baseline, target, feature_mask).double()  # (B, 2)
    v = coalition_values(model, x, z, baseline, target, feature_mask).double().cpu()  # (B, K)
    v0, gap = v_ends[:, 0].cpu(), (v_ends[:, 1] - v_ends[:, 0]).cpu()
    # Eliminate φ_M = gap − Σ_{i<M} φ_i: v − v0 − z_M·gap = Σ_{i<M} φ_i (z_i − z_M)
    a = z[:, :-1] - z[:, -1:]  # (K, M−1)
    b = v - v0[:, None] - z[:, -1] * gap[:, None]  # (B, K)
    w = pi.sqrt()
    sol = torch.linalg.lstsq(
        (a * w[:, None])[None].expand(len(b), -1, -1), (b * w)[..., None]
    ).solution
    phi = torch.cat([sol[..., 0], gap[:, None] - sol[..., 0].sum(1, keepdim=True)], 1)  # (B, M)
    return phi.to(x.device, x.dtype)


# ------------------------------------------------------------------------------ attention
def attention_rollout(maps: torch.Tensor, residual: bool = True) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020) from ``maps`` ``(n_layers, B, n_heads, L, L)``.

    Each layer's heads are averaged; with ``residual`` the skip connection is added as
    ``½A + ½I`` (rows renormalised); the layers compose as ``R = Â_L ⋯ Â_1``. Returns ``(B, L,
    L)``: row ``q`` is how much each input token reaches position ``q`` at the top (rows sum to 1).
    """
    validate.ndim(maps, 5, "maps", "(n_layers, batch, n_heads, L, L)")
    validate.floating(maps, "maps")
    if maps.shape[-1] != maps.shape[-2]:
        raise ValueError(f"attention maps must be square (L, L), got {tuple(maps.shape[-2:])}")
    a = maps.mean(2)  # (n_layers, B, L, L)
    if residual:
        a = 0.5 * a + 0.5 * torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = a / a.sum(-1, keepdim=True)
    rollout = a[0]
    for layer in a[1:]:
        rollout = layer @ rollout  # (B, L, L): later layers act on the left
    return rollout
