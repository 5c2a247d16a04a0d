"""Recommending items and testing the recommender online: matrix factorisation and A/B statistics.

**The click model.** A logged impression is a user ``u`` shown an item ``i``, with a click
``y ∈ {0, 1}``. Logistic matrix factorisation {cite}`koren2009matrix` scores the pair by a
global bias, a user bias, an item bias and the dot product of ``d_model``-dimensional user and
item factors, and reads the score as the log-odds of a click::

    s_ui = b + b_u + b_i + p_u · q_i        P(click) = σ(s_ui)
    loss = BCE(s, y) + reg · mean(|p_u|² + |q_i|² + b_u² + b_i²)   over the logged impressions

    users (B,) ─ P[users] (B, d_model) ─┐
                                        ├─ Σ_d (B,) + biases → logits (B,)
    items (B,) ─ Q[items] (B, d_model) ─┘

A ranker shows each user the ``k`` unseen items of highest score; recall@k and NDCG@k score a
ranking against held-out clicks.

**The A/B test.** Users are split at random between rankers A and B; the metric is a
proportion (the share of users who click), ``p̂_a = x_a / n_a`` and ``p̂_b = x_b / n_b``. The
two-proportion z-test uses the pooled rate ``p̂ = (x_a + x_b) / (n_a + n_b)``::

    z = (p̂_b − p̂_a) / sqrt(p̂ (1 − p̂) (1/n_a + 1/n_b))      p-value = 2 (1 − Φ(|z|))
    CI = p̂_b − p̂_a ± z_{1−α/2} sqrt(p̂_a (1 − p̂_a)/n_a + p̂_b (1 − p̂_b)/n_b)   (Wald)

and, for equal arms, the users per arm that detect a difference ``Δ = p_b − p_a`` with
probability ``power`` at level ``α`` (``p̄ = (p_a + p_b) / 2``, ``q = 1 − p``)::

    n = ⌈(z_{1−α/2} sqrt(2 p̄ q̄) + z_{power} sqrt(p_a q_a + p_b q_b))² / Δ²⌉

Gelman and Carlin's *retrodesign* {cite}`gelman2014beyond` gives, for a true effect ``D``
estimated with standard error ``s``, the power, the Type-S rate (a significant result of the
wrong sign) and the exaggeration ratio (Type M: the mean ``|estimate| / |D|`` among
significant results).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from zen import validate

_NORMAL = NormalDist()


def _ids(x: object, size: int, name: str) -> torch.Tensor:
    validate.ndim(x, 1, name, "(batch,)")
    if x.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must hold integer ids (int64), got {x.dtype}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= size):
        raise ValueError(f"{name} must lie in [0, {size}), got [{int(x.min())}, {int(x.max())}]")
    return x


class MatrixFactorization(nn.Module):
    """Logistic matrix factorisation: ``s_ui = b + b_u + b_i + p_u · q_i``, click logits.

    ``user`` ``(n_users, d_model)`` and ``item`` ``(n_items, d_model)`` factors start at
    ``N(0, init_std²)``, the biases at 0.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        d_model: int = 8,
        init_std: float = 0.1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.n_users = validate.positive_int(n_users, "n_users")
        self.n_items = validate.positive_int(n_items, "n_items")
        validate.positive_int(d_model, "d_model")
        validate.positive(init_std, "init_std")
        self.user = nn.Parameter(init_std * torch.randn(n_users, d_model, generator=generator))
        self.item = nn.Parameter(init_std * torch.randn(n_items, d_model, generator=generator))
        self.user_bias = nn.Parameter(torch.zeros(n_users))
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Click logits ``(B,)`` of the pairs ``users`` ``(B,)``, ``items`` ``(B,)``."""
        _ids(users, self.n_users, "users"), _ids(items, self.n_items, "items")
        validate.same_shape(items, users, "items", "users")
        dot = (self.user[users] * self.item[items]).sum(-1)  # (B,)
        return self.bias + self.user_bias[users] + self.item_bias[items] + dot

    def scores(self, users: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of every item for ``users`` ``(U,)`` (default: all users): ``(U, n_items)``."""
        if users is None:
            users = torch.arange(self.n_users, device=self.user.device)
        _ids(users, self.n_users, "users")
        dot = self.user[users] @ self.item.T  # (U, n_items)
        return self.bias + self.user_bias[users, None] + self.item_bias[None] + dot

    def penalty(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``mean(|p_u|² + |q_i|² + b_u² + b_i²)`` over the pairs: the L2 term of the loss."""
        squares = self.user[users].square().sum(-1) + self.item[items].square().sum(-1)
        return (squares + self.user_bias[users].square() + self.item_bias[items].square()).mean()


def fit_click_model(
    users: torch.Tensor,
    items: torch.Tensor,
    clicks: torch.Tensor,
    n_users: int,
    n_items: int,
    d_model: int = 8,
    reg: float = 0.02,
    steps: int = 200,
    lr: float = 0.05,
    generator: torch.Generator | None = None,
    dense: bool | None = None,
) -> MatrixFactorization:
    """Fit :class:`MatrixFactorization` to logged impressions by full-batch Adam.

    ``users``, ``items`` ``(N,)`` ids and ``clicks`` ``(N,)`` in {0, 1}; minimises
    ``BCE(s, clicks) + reg · penalty`` (both means over the ``N`` impressions) for ``steps``
    steps. ``dense`` picks the path: the readable one gathers the ``N`` logged pairs; the dense
    one scores the whole ``(n_users, n_items)`` matrix by one matmul and weighs each cell by
    its number of impressions (the same loss, without gather/scatter; ``None`` chooses it when
    the matrix has at most 10 M cells). Returns the model in eval mode.
    """
    _ids(users, n_users, "users"), _ids(items, n_items, "items")
    validate.same_shape(items, users, "items", "users")
    validate.same_shape(clicks, users, "clicks", "users")
    if users.numel() == 0:
        raise ValueError("need at least one logged impression, got 0")
    if not bool(((clicks == 0) | (clicks == 1)).all()):
        raise ValueError("clicks must be 0 or 1")
    if isinstance(reg, bool) or not isinstance(reg, (int, float)) or reg < 0:
        raise ValueError(f"reg must be a non-negative number, got {reg!r}")
    validate.positive_int(steps, "steps")
    validate.positive(lr, "lr")
    if dense is None:
        dense = n_users * n_items <= 10_000_000
    model = MatrixFactorization(n_users, n_items, d_model, generator=generator).to(users.device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n, target = users.numel(), clicks.float()
    if dense:  # impressions and clicks per cell; BCE is linear in the target, so mean clicks
        cell = users * n_items + items
        count = torch.bincount(cell, minlength=n_users * n_items).view(n_users, n_items)
        clicked = torch.bincount(cell, weights=target, minlength=n_users * n_items)
        cell_target = clicked.view(n_users, n_items) / count.clamp(min=1)
        count = count.float()
        per_user, per_item = count.sum(1), count.sum(0)  # (n_users,), (n_items,)
    for _ in range(steps):
        if dense:
            logits = model.scores()  # (n_users, n_items)
            loss = F.binary_cross_entropy_with_logits(
                logits, cell_target, weight=count, reduction="sum"
            )
            penalty = per_user @ (model.user.square().sum(1) + model.user_bias.square())
            penalty = penalty + per_item @ (model.item.square().sum(1) + model.item_bias.square())
            loss = (loss + reg * penalty) / n
        else:
            loss = F.binary_cross_entropy_with_logits(model(users, items), target)
            loss = loss + reg * model.penalty(users, items)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def top_k(scores: torch.Tensor, k: int, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """The ``k`` highest-scoring items per row of ``scores`` ``(U, n_items)``: ``(U, k)`` ids.

    ``exclude`` ``(U, n_items)`` booleans marks items never to recommend (already seen).
    """
    validate.ndim(scores, 2, "scores", "(users, n_items)")
    validate.floating(scores, "scores")
    validate.positive_int(k, "k")
    if exclude is not None:
        validate.same_shape(exclude, scores, "exclude", "scores")
        if exclude.dtype != torch.bool:
            raise TypeError(f"exclude must be a boolean mask, got {exclude.dtype}")
        if int((~exclude).sum(1).min()) < k:
            raise ValueError(f"some user has fewer than k={k} items left after exclude")
        scores = scores.masked_fill(exclude, -math.inf)
    if k > scores.shape[1]:
        raise ValueError(f"k ({k}) exceeds the number of items ({scores.shape[1]})")
    return scores.topk(k, dim=1).indices


def _ranked_relevant(ranked: torch.Tensor, relevant: torch.Tensor) -> torch.Tensor:
    """Validate and return ``(U, k)`` 0/1 hits; users without a relevant item are dropped."""
    validate.ndim(ranked, 2, "ranked", "(users, k)")
    validate.ndim(relevant, 2, "relevant", "(users, n_items)")
    validate.same_size(ranked, relevant, 0, "ranked", "relevant")
    if relevant.dtype != torch.bool:
        raise TypeError(f"relevant must be a boolean mask, got {relevant.dtype}")
    _ids(ranked.reshape(-1), relevant.shape[1], "ranked")
    if not bool(relevant.any()):
        raise ValueError("relevant marks no item for any user: nothing to score")
    return relevant.gather(1, ranked).double()


def recall_at_k(ranked: torch.Tensor, relevant: torch.Tensor) -> float:
    """Mean over users with a relevant item of ``|top-k ∩ relevant| / |relevant|``.

    ``ranked`` ``(U, k)`` item ids, best first; ``relevant`` ``(U, n_items)`` booleans.
    """
    hits = _ranked_relevant(ranked, relevant)  # (U, k)
    n_rel = relevant.sum(1).double()
    keep = n_rel > 0
    return float((hits.sum(1)[keep] / n_rel[keep]).mean())


def ndcg_at_k(ranked: torch.Tensor, relevant: torch.Tensor) -> float:
    """Mean over users with a relevant item of ``DCG@k / IDCG@k``, binary relevance.

    ``DCG@k = Σ_r rel_r / log2(r + 1)`` over ranks ``r = 1..k``; the ideal ranking puts the
    ``min(k, |relevant|)`` relevant items first.
    """
    hits = _ranked_relevant(ranked, relevant)  # (U, k)
    k = ranked.shape[1]
    discount = 1 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64, device=hits.device))
    n_rel = relevant.sum(1)
    ideal = (torch.arange(k, device=hits.device)[None] < n_rel[:, None]).double() @ discount
    keep = n_rel > 0
    return float(((hits @ discount)[keep] / ideal[keep]).mean())


def _rates(p_a: float, p_b: float, alpha: float) -> None:
    for name, p in (("p_a", p_a), ("p_b", p_b)):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p < 1:
            raise ValueError(f"{name} must be a rate in (0, 1), got {p!r}")
    if p_a == p_b:
        raise ValueError(f"p_a and p_b must differ (the effect to detect), both are {p_a}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def power(n: int, p_a: float, p_b: float, alpha: float = 0.05) -> float:
    """Normal-approximation power of the two-sided pooled z-test with ``n`` users per arm.

    The chance that the test rejects in the direction of the true difference ``p_b − p_a``
    (the other tail, a significant result of the wrong sign, is left out, as in the sample-size
    formula).
    """
    _rates(p_a, p_b, alpha)
    validate.positive_int(n, "n")
    p_bar = (p_a + p_b) / 2
    null_sd = math.sqrt(2 * p_bar * (1 - p_bar))
    alt_sd = math.sqrt(p_a * (1 - p_a) + p_b * (1 - p_b))
    z_alpha = _NORMAL.inv_cdf(1 - alpha / 2)
    return _NORMAL.cdf((abs(p_b - p_a) * math.sqrt(n) - z_alpha * null_sd) / alt_sd)


def sample_size(p_a: float, p_b: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Users per arm for the two-sided pooled z-test to detect ``p_b − p_a`` (see the module).

    The smallest ``n`` whose :func:`power` reaches ``power``.
    """
    _rates(p_a, p_b, alpha)
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power!r}")
    p_bar = (p_a + p_b) / 2
    z_alpha, z_power = _NORMAL.inv_cdf(1 - alpha / 2), _NORMAL.inv_cdf(power)
    root = z_alpha * math.sqrt(2 * p_bar * (1 - p_bar))
    root += z_power * math.sqrt(p_a * (1 - p_a) + p_b * (1 - p_b))
    return max(1, math.ceil(root**2 / (p_b - p_a) ** 2 - 1e-9))


class ABResult(NamedTuple):
    """The estimated difference ``p̂_b − p̂_a``, pooled ``z``, two-sided p-value and Wald CI."""

    diff: torch.Tensor
    z: torch.Tensor
    p_value: torch.Tensor
    ci_low: torch.Tensor
    ci_high: torch.Tensor


def _counts(clicks: object, n: object, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    for value, what in ((clicks, f"clicks_{name}"), (n, f"n_{name}")):
        if isinstance(value, bool) or not isinstance(value, (int, torch.Tensor)):
            raise TypeError(f"{what} must be an int or an integer tensor, got {type(value)}")
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            if not bool((value == value.round()).all()):
                raise ValueError(f"{what} must hold whole counts, got fractions")
    clicks, n = torch.as_tensor(clicks).double(), torch.as_tensor(n).double()
    if bool((n < 1).any()):
        raise ValueError(f"n_{name} must be at least 1 user")
    if bool((clicks < 0).any() | (clicks > n).any()):
        raise ValueError(f"clicks_{name} must lie in [0, n_{name}]")
    return clicks, n


def ab_test(
    clicks_a: int | torch.Tensor,
    n_a: int | torch.Tensor,
    clicks_b: int | torch.Tensor,
    n_b: int | torch.Tensor,
    alpha: float = 0.05,
) -> ABResult:
    """Two-proportion z-test of B against A and the ``1 − alpha`` Wald CI of ``p_b − p_a``.

    Counts are ints or integer-valued tensors of any broadcastable shape (one test per
    element, for simulating many experiments); every field of the result has that shape, in
    float64. When no user (or every user) clicked in both arms, ``z = 0`` and ``p = 1``.
    """
    x_a, n_a = _counts(clicks_a, n_a, "a")
    x_b, n_b = _counts(clicks_b, n_b, "b")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    p_a, p_b = x_a / n_a, x_b / n_b
    diff = p_b - p_a
    pooled = (x_a + x_b) / (n_a + n_b)
    se_null = (pooled * (1 - pooled) * (1 / n_a + 1 / n_b)).sqrt()
    z = torch.where(se_null > 0, diff / se_null.clamp(min=1e-300), torch.zeros_like(diff))
    p_value = 2 * torch.special.ndtr(-z.abs())
    half = _NORMAL.inv_cdf(1 - alpha / 2) * (p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b).sqrt()
    return ABResult(diff, z, p_value, diff - half, diff + half)


def retrodesign(effect: float, se: float, alpha: float = 0.05) -> tuple[float, float, float]:
    """Power, Type-S rate and exaggeration ratio of a two-sided z-test (Gelman and Carlin).

    The estimate is ``N(effect, se²)`` and significant when ``|estimate| > z_{1−α/2} se``;
    the exaggeration ratio is ``E[|estimate| | significant] / |effect|``, from the truncated
    normal's first moment.
    """
    for name, value in (("effect", effect), ("se", se)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if effect == 0:
        raise ValueError("effect must be non-zero: Type S and M are defined against a true effect")
    validate.positive(se, "se")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    d = abs(effect) / se  # the effect in standard errors; the sign is symmetric
    c = _NORMAL.inv_cdf(1 - alpha / 2)
    right, wrong = 1 - _NORMAL.cdf(c - d), _NORMAL.cdf(-c - d)
    power_ = right + wrong
    # E[X; X > c] + E[-X; X < -c] for X ~ N(d, 1)
    moment = d * right + _NORMAL.pdf(c - d) - d * wrong + _NORMAL.pdf(-c - d)
    return power_, wrong / power_, moment / (power_ * d)
