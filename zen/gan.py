"""Generative adversarial networks.

A generator ``G`` maps noise ``z`` ``(n, latent)`` to samples ``(n, d)``; a discriminator
``D`` maps samples to a **logit** ``(n,)`` whose sigmoid is the probability "real". The game
(Goodfellow et al., 2014) is

    min_G max_D  V(D, G) = E_x[log D(x)] + E_z[log(1 − D(G(z)))].

Every loss here takes logits, never probabilities, so it is computed with ``softplus``
(``log(1 + e^t)``) and stays finite when ``D`` is certain:

* :func:`discriminator_loss` — ``−E[log D(x)] − E[log(1 − D(G(z)))]`` (binary cross-entropy);
* :func:`generator_loss` — ``"saturating"``: ``E[log(1 − D(G(z)))]`` (the minimax loss, whose
  gradient vanishes when ``D`` rejects the fakes) or ``"non_saturating"``: ``−E[log D(G(z))]``;
* :func:`wgan_critic_loss`, :func:`wgan_generator_loss` and :func:`gradient_penalty` — WGAN-GP
  (Arjovsky et al., 2017; Gulrajani et al., 2017): the critic outputs an unbounded score;
* :func:`optimal_discriminator` — ``D*(x) = p_data(x) / (p_data(x) + p_g(x))``;
* :class:`MLPGenerator`, :class:`MLPDiscriminator` and :func:`train_gan` — small networks and
  a readable alternating training loop, enough for 1-D/2-D toy data and 8×8 digits; with
  ``num_classes`` both networks read a one-hot class, a conditional GAN (Mirza & Osindero, 2014);
* :func:`mode_coverage` — how many modes of a Gaussian mixture a sampler covers, and the share
  of its samples that land near a mode;
* :func:`precision_recall` — k-NN precision, recall (Kynkäänniemi et al., 2019) and coverage
  (Naeem et al., 2020) of samples against real data: quality and diversity as two numbers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from tqdm.auto import tqdm

from zen import validate
from zen.device import generator as seeded_generator
from zen.mlp import mlp

GENERATOR_LOSSES = ("saturating", "non_saturating")
TRAIN_LOSSES = ("saturating", "non_saturating", "wgan-gp")


def _check_scores(x: torch.Tensor, name: str) -> None:
    validate.ndim(x, 1, name, "(batch,) — one logit/score per sample")
    validate.floating(x, name)
    if x.numel() == 0:
        raise ValueError(f"{name} must hold at least one sample, got shape {tuple(x.shape)}")


# --------------------------------------------------------------------------- losses
def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``−E[log D(x)] − E[log(1 − D(G(z)))]`` from logits ``(n_real,)`` and ``(n_fake,)``.

    With ``D = σ(t)``: ``−log σ(t) = softplus(−t)`` and ``−log(1 − σ(t)) = softplus(t)``.
    Equal to ``BCEWithLogits(real, 1) + BCEWithLogits(fake, 0)``; its minimum over ``D``
    is ``−V(D*, G) = log 4 − 2·JSD(p_data ‖ p_g)``.
    """
    _check_scores(real_logits, "real_logits")
    _check_scores(fake_logits, "fake_logits")
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, kind: str = "non_saturating") -> torch.Tensor:
    """The generator's loss on the discriminator's logits ``(n,)`` for its samples.

    * ``"saturating"``: ``E[log(1 − D(G(z)))] = −E[softplus(t)]``; ``∂/∂t = −D/n``, which
      vanishes when ``D(G(z)) → 0`` — exactly early in training, when fakes are easy to spot.
    * ``"non_saturating"``: ``−E[log D(G(z))] = E[softplus(−t)]``; ``∂/∂t = −(1 − D)/n``,
      largest when the fakes are worst. Same fixed point, far better gradients.
    """
    _check_scores(fake_logits, "fake_logits")
    if kind == "saturating":
        return -F.softplus(fake_logits).mean()
    if kind == "non_saturating":
        return F.softplus(-fake_logits).mean()
    raise ValueError(f"kind must be one of {GENERATOR_LOSSES}, got {kind!r}")


def wgan_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """``E[f(G(z))] − E[f(x)]``: the critic ``f`` maximises the gap (an estimate of W1 when ``f`` is 1-Lipschitz)."""
    _check_scores(real_scores, "real_scores")
    _check_scores(fake_scores, "fake_scores")
    return fake_scores.mean() - real_scores.mean()


def wgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """``−E[f(G(z))]``: the generator raises the critic's score of its samples."""
    _check_scores(fake_scores, "fake_scores")
    return -fake_scores.mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    alpha: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty ``E[(‖∇_x̂ f(x̂)‖₂ − 1)²]`` at ``x̂ = α·real + (1 − α)·fake``.

    Args:
        critic: maps ``(n, ...)`` to scores ``(n,)``.
        real, fake: ``(n, ...)`` batches of the same shape.
        alpha: ``(n,)`` mixing weights in ``[0, 1]``; drawn ``U(0, 1)`` (from ``generator``) if ``None``.

    The gradient is taken with ``create_graph=True``, so the penalty is differentiable with
    respect to the critic's parameters (it is added to the critic's loss).
    """
    validate.tensor(real, "real")
    validate.tensor(fake, "fake")
    validate.floating(real, "real")
    if real.shape != fake.shape or real.ndim < 2:
        raise ValueError(
            f"real and fake must have the same shape (n, ...), got {tuple(real.shape)} and {tuple(fake.shape)}"
        )
    n = real.shape[0]
    if alpha is None:
        alpha = torch.rand(n, generator=generator, dtype=real.dtype).to(real.device)
    validate.ndim(alpha, 1, "alpha", "(n,)")
    if alpha.shape[0] != n:
        raise ValueError(f"alpha must have shape ({n},), got {tuple(alpha.shape)}")
    a = alpha.reshape(n, *([1] * (real.ndim - 1)))  # (n,) -> (n, 1, ..., 1) to broadcast
    x_hat = (a * real.detach() + (1 - a) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat)
    _check_scores(scores, "critic(x_hat)")
    (grad,) = torch.autograd.grad(
        scores.sum(), x_hat, create_graph=True
    )  # (n, ...): row i = ∇f(x̂_i)
    norms = grad.flatten(1).norm(dim=1)  # (n,)
    return ((norms - 1) ** 2).mean()


def optimal_discriminator(p_data: torch.Tensor, p_g: torch.Tensor) -> torch.Tensor:
    """``D*(x) = p_data(x) / (p_data(x) + p_g(x))`` from two density tensors of the same shape.

    Where both densities are zero ``D*`` is undefined (no sample ever lands there); it is set
    to ``1/2`` there.
    """
    validate.floating(p_data, "p_data")
    validate.floating(p_g, "p_g")
    if p_data.shape != p_g.shape:
        raise ValueError(
            f"p_data and p_g must have the same shape, got {tuple(p_data.shape)} and {tuple(p_g.shape)}"
        )
    if (p_data < 0).any() or (p_g < 0).any():
        raise ValueError("densities must be non-negative")
    total = p_data + p_g
    return torch.where(
        total > 0,
        p_data / total.clamp_min(torch.finfo(total.dtype).tiny),
        torch.full_like(total, 0.5),
    )


# --------------------------------------------------------------------------- networks
def _check_num_classes(num_classes: int) -> int:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
        raise ValueError(f"num_classes must be a non-negative int, got {num_classes!r}")
    return num_classes


def _with_class(x: torch.Tensor, y: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """``(n, f)`` -> ``(n, f + num_classes)``: ``x`` with the one-hot class appended."""
    if num_classes == 0:
        if y is not None:
            raise ValueError("this network is unconditional (num_classes=0) but got classes y")
        return x
    if y is None:
        raise ValueError(f"this network is conditional (num_classes={num_classes}): pass y")
    validate.ndim(y, 1, "y", "(batch,) class indices")
    if y.dtype != torch.long:
        raise TypeError(f"y must hold int64 class indices, got dtype {y.dtype}")
    validate.same_size(x, y, 0, "x", "y")
    if y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"y must lie in [0, {num_classes}), got [{y.min()}, {y.max()}]")
    return torch.cat([x, F.one_hot(y, num_classes).to(x.dtype)], dim=1)


class MLPGenerator(nn.Module):
    """``G: (n, latent_dim) -> (n, out_dim)``: an MLP with ReLU hidden layers.

    ``output="linear"`` for unbounded data (toy 1-D/2-D), ``"sigmoid"`` for pixels in ``[0, 1]``.
    With ``num_classes > 0`` it is *conditional* (Mirza & Osindero, 2014): ``G(z, y)`` reads the
    one-hot class ``y`` ``(n,)`` concatenated to ``z``, ``(n, latent_dim + num_classes)``.
    """

    def __init__(
        self,
        latent_dim: int,
        out_dim: int,
        hidden: int = 128,
        depth: int = 2,
        output: str = "linear",
        num_classes: int = 0,
    ):
        super().__init__()
        for value, name in (
            (latent_dim, "latent_dim"),
            (out_dim, "out_dim"),
            (hidden, "hidden"),
            (depth, "depth"),
        ):
            validate.positive_int(value, name)
        if output not in ("linear", "sigmoid"):
            raise ValueError(f"output must be 'linear' or 'sigmoid', got {output!r}")
        self.latent_dim, self.out_dim, self.output = latent_dim, out_dim, output
        self.num_classes = _check_num_classes(num_classes)
        self.net = mlp([latent_dim + num_classes] + [hidden] * depth + [out_dim], nn.ReLU)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        validate.ndim(z, 2, "z", "(batch, latent_dim)")
        if z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have {self.latent_dim} features, got shape {tuple(z.shape)}")
        x = self.net(_with_class(z, y, self.num_classes))
        return torch.sigmoid(x) if self.output == "sigmoid" else x

    def sample(
        self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``n`` samples ``(n, out_dim)`` from ``z ~ N(0, I)`` (noise drawn on CPU from ``generator``).

        A conditional generator needs the classes ``y`` ``(n,)`` of the samples.
        """
        validate.positive_int(n, "n")
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator).to(device)
        return self(z, None if y is None else y.to(device))


class MLPDiscriminator(nn.Module):
    """``D: (n, in_dim) -> (n,)`` logits (or WGAN critic scores): an MLP with LeakyReLU(0.2).

    No normalisation layers, so the critic's input gradient is per-sample, as WGAN-GP requires.
    With ``num_classes > 0``, ``D(x, y)`` also reads the one-hot class: it judges whether ``x``
    is a real example *of class* ``y``.
    """

    def __init__(self, in_dim: int, hidden: int = 128, depth: int = 2, num_classes: int = 0):
        super().__init__()
        for value, name in ((in_dim, "in_dim"), (hidden, "hidden"), (depth, "depth")):
            validate.positive_int(value, name)
        self.in_dim = in_dim
        self.num_classes = _check_num_classes(num_classes)
        self.net = mlp([in_dim + num_classes] + [hidden] * depth + [1], lambda: nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        validate.ndim(x, 2, "x", "(batch, in_dim)")
        if x.shape[1] != self.in_dim:
            raise ValueError(f"x must have {self.in_dim} features, got shape {tuple(x.shape)}")
        return self.net(_with_class(x, y, self.num_classes)).squeeze(1)  # (n, 1) -> (n,)


# --------------------------------------------------------------------------- training
@dataclass
class GANHistory:
    """Per generator step: losses, the mean ``D(G(z))`` (``nan`` for WGAN) and sample snapshots."""

    d_loss: list[float] = field(default_factory=list)
    g_loss: list[float] = field(default_factory=list)
    d_fake: list[float] = field(default_factory=list)
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    ema_snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    ema_generator: nn.Module | None = None


def train_gan(
    G: MLPGenerator,
    D: MLPDiscriminator,
    data: torch.Tensor,
    *,
    steps: int,
    labels: torch.Tensor | None = None,
    loss: str = "non_saturating",
    batch_size: int = 64,
    lr: float = 2e-4,
    lr_d: float | None = None,
    betas: tuple[float, float] = (0.5, 0.999),
    d_steps: int = 1,
    g_steps: int = 1,
    gp_weight: float = 10.0,
    seed: int = 0,
    optimizer: str = "adam",
    pack: int = 1,
    ema_decay: float | None = None,
    snapshot_every: int | None = None,
    n_snapshot: int = 64,
    progress: bool = True,
) -> GANHistory:
    """Alternate ``d_steps`` discriminator (critic) updates and one generator update, ``steps`` times.

    Args:
        data: real samples ``(n, d)`` on any device (batches are drawn with replacement).
        labels: classes ``(n,)`` of ``data`` for a conditional GAN (``G`` and ``D`` built with
            ``num_classes``): real batches carry their labels, fake batches the labels of
            another random batch of data, so both follow the data's class frequencies.
        d_steps, g_steps: discriminator and generator updates per step.
        loss: ``"saturating"`` / ``"non_saturating"`` (standard GAN: :func:`discriminator_loss`
            and :func:`generator_loss`) or ``"wgan-gp"`` (:func:`wgan_critic_loss` +
            ``gp_weight`` × :func:`gradient_penalty`, and :func:`wgan_generator_loss`).
        lr, lr_d: learning rates of ``G`` and ``D`` (``lr_d`` defaults to ``lr``).
        pack: PacGAN packing (Lin et al., 2018): ``D`` judges ``pack`` samples at once, all real
            or all fake, concatenated into one input ``(batch / pack, pack·d)``. A collapsed
            generator's packs lack the variety of real packs, so ``D`` can see collapse;
            ``D.in_dim`` must be ``pack·d`` and ``batch_size`` a multiple of ``pack``.
        ema_decay: if given, also keep an exponential moving average of the generator's
            weights, ``θ_ema ← decay·θ_ema + (1 − decay)·θ`` after every generator step
            (Yazıcı et al., 2019); it is returned as ``history.ema_generator`` and snapshotted
            into ``history.ema_snapshots``. Averaging damps the generator's oscillation
            around the equilibrium at no training cost.
        snapshot_every: every that many generator steps (and at step 0 and the end) store
            ``G`` applied to the same ``n_snapshot`` noise vectors, on CPU.

    Both networks are trained by ``optimizer``: ``"adam"`` (with ``betas``) or ``"sgd"`` (plain
    gradient steps, which expose the raw size of each loss's gradient — Adam rescales it away).
    All randomness comes from a generator seeded by ``seed``.
    """
    validate.ndim(data, 2, "data", "(n, features)")
    validate.floating(data, "data")
    validate.positive_int(steps, "steps")
    validate.positive_int(batch_size, "batch_size")
    validate.positive_int(d_steps, "d_steps")
    validate.positive_int(g_steps, "g_steps")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    if ema_decay is not None:
        validate.in_range(ema_decay, "ema_decay", 0.0, 1.0)
    if loss not in TRAIN_LOSSES:
        raise ValueError(f"loss must be one of {TRAIN_LOSSES}, got {loss!r}")
    validate.positive_int(pack, "pack")
    if batch_size % pack:
        raise ValueError(f"batch_size must be a multiple of pack={pack}, got {batch_size}")
    if G.num_classes != D.num_classes or (labels is None) != (G.num_classes == 0):
        raise ValueError(
            f"G has num_classes={G.num_classes}, D has {D.num_classes} and labels are "
            f"{'missing' if labels is None else 'given'}: a conditional GAN needs both and labels"
        )
    if labels is not None:
        validate.same_size(data, labels, 0, "data", "labels")
        if pack != 1:
            raise ValueError(f"pack must be 1 for a conditional GAN, got {pack}")
        labels = labels.to(data.device)
    if data.shape[1] != G.out_dim or D.in_dim != pack * G.out_dim:
        raise ValueError(
            f"data has {data.shape[1]} features, G makes {G.out_dim}, D reads {D.in_dim}: "
            f"they must agree (D reads pack × features = {pack} × {data.shape[1]})"
        )

    def judge(x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if y is not None:
            return D(x, y)
        return D(rearrange(x, "(b p) d -> b (p d)", p=pack))  # (batch, d) -> (batch / pack, pack·d)

    device = data.device
    G.to(device).train()
    D.to(device).train()
    lr_d = lr if lr_d is None else lr_d
    if optimizer == "adam":
        opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=betas)
        opt_d = torch.optim.Adam(D.parameters(), lr=lr_d, betas=betas)
    else:
        opt_g, opt_d = (
            torch.optim.SGD(G.parameters(), lr=lr),
            torch.optim.SGD(D.parameters(), lr=lr_d),
        )
    rng = seeded_generator(seed)
    z_fixed = torch.randn(n_snapshot, G.latent_dim, generator=rng).to(device)
    history = GANHistory()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False) if ema_decay is not None else None
    history.ema_generator = G_ema

    def noise() -> torch.Tensor:
        return torch.randn(batch_size, G.latent_dim, generator=rng).to(device)

    def batch() -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = torch.randint(len(data), (batch_size,), generator=rng).to(device)
        return data[idx], None if labels is None else labels[idx]

    def classes() -> torch.Tensor | None:
        """Labels of another random batch of data (``None`` for an unconditional GAN)."""
        return None if labels is None else batch()[1]

    y_fixed = (
        None
        if labels is None
        else labels[torch.randint(len(data), (n_snapshot,), generator=rng).to(device)]
    )

    def snapshot(step: int) -> None:
        with torch.no_grad():
            history.snapshots[step] = G(z_fixed, y_fixed).cpu()
            if G_ema is not None:
                history.ema_snapshots[step] = G_ema(z_fixed, y_fixed).cpu()

    if snapshot_every:
        snapshot(0)
    for step in tqdm(range(1, steps + 1), desc=f"GAN ({loss})", disable=not progress):
        for _ in range(d_steps):
            real, y_real = batch()
            y_fake = classes()
            with torch.no_grad():
                fake = G(noise(), y_fake)
            if loss == "wgan-gp":
                critic = D if labels is None else (lambda x: D(x, y_real))
                if labels is not None:  # interpolate within a class: fakes of the real classes
                    with torch.no_grad():
                        fake = G(noise(), y_real)
                packed = (rearrange(v, "(b p) d -> b (p d)", p=pack) for v in (real, fake))
                gp = gradient_penalty(critic, *packed, generator=rng)
                d_loss = wgan_critic_loss(judge(real, y_real), judge(fake, y_real)) + (
                    gp_weight * gp
                )
            else:
                d_loss = discriminator_loss(judge(real, y_real), judge(fake, y_fake))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        for _ in range(g_steps):
            y_gen = classes()
            fake_logits = judge(G(noise(), y_gen), y_gen)
            g_loss = (
                wgan_generator_loss(fake_logits)
                if loss == "wgan-gp"
                else generator_loss(fake_logits, loss)
            )
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
        if G_ema is not None:
            with torch.no_grad():
                for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                    p_ema.lerp_(p, 1 - ema_decay)
        history.d_loss.append(d_loss.item())
        history.g_loss.append(g_loss.item())
        history.d_fake.append(
            float("nan") if loss == "wgan-gp" else torch.sigmoid(fake_logits).mean().item()
        )
        if snapshot_every and (step % snapshot_every == 0 or step == steps):
            snapshot(step)
    G.eval()
    D.eval()
    return history


# --------------------------------------------------------------------------- diagnostics
@dataclass(frozen=True)
class ModeReport:
    """Outcome of :func:`mode_coverage`."""

    covered: int  # modes holding at least min_count high-quality samples
    high_quality: float  # share of samples within `threshold` stds of their nearest mode
    counts: torch.Tensor  # (k,) high-quality samples per mode


def mode_coverage(
    samples: torch.Tensor,
    centers: torch.Tensor,
    std: float,
    threshold: float = 3.0,
    min_count: int | None = None,
) -> ModeReport:
    """Mode-collapse diagnostic for a mixture of ``k`` isotropic Gaussians with centres ``(k, d)``.

    A sample ``(n, d)`` is *high quality* when it lies within ``threshold·std`` of its nearest
    centre; a mode is *covered* when at least ``min_count`` high-quality samples fall on it
    (default: a quarter of a fair share, ``n / (4k)``). A perfect sampler covers all ``k``
    modes with a high-quality share near ``P(χ²_d ≤ threshold²)`` (98.9 % for d = 2, threshold 3).
    """
    validate.ndim(samples, 2, "samples", "(n, d)")
    validate.ndim(centers, 2, "centers", "(k, d)")
    validate.same_size(samples, centers, 1, "samples", "centers")
    if std <= 0 or threshold <= 0:
        raise ValueError(
            f"std and threshold must be positive, got std={std!r}, threshold={threshold!r}"
        )
    n, k = len(samples), len(centers)
    if n == 0:
        raise ValueError("samples is empty")
    min_count = (
        max(1, n // (4 * k)) if min_count is None else validate.positive_int(min_count, "min_count")
    )
    dist = torch.cdist(samples.float(), centers.float().to(samples.device))  # (n, k)
    nearest_dist, nearest = dist.min(dim=1)  # (n,), (n,)
    good = nearest_dist <= threshold * std
    counts = torch.bincount(nearest[good], minlength=k).cpu()
    return ModeReport(
        covered=int((counts >= min_count).sum()),
        high_quality=good.float().mean().item(),
        counts=counts,
    )


@dataclass(frozen=True)
class PrecisionRecall:
    """Outcome of :func:`precision_recall`: shares in ``[0, 1]``."""

    precision: float  # share of generated samples inside the real manifold
    recall: float  # share of real samples inside the generated manifold
    coverage: float  # share of real samples whose own k-NN ball holds a generated sample


def _knn_radius(points: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point ``(n, d)`` to its ``k``-th nearest other point: ``(n,)``."""
    return torch.cdist(points, points).kthvalue(k + 1, dim=1).values  # the point itself is 0


def _knn_manifold(points: torch.Tensor, queries: torch.Tensor, k: int) -> torch.Tensor:
    """Whether each query ``(m, d)`` lies within some point's k-NN radius; ``(m,)`` bool."""
    inside = torch.cdist(queries, points) <= _knn_radius(points, k)  # (m, n)
    return inside.any(dim=1)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al., 2019) of ``fake`` ``(m, d)`` vs ``real`` ``(n, d)``.

    Each set's manifold is the union of balls around its points with radius the distance to
    the ``k``-th nearest neighbour within the set. **Precision** is the share of fake samples
    inside the real manifold (are the samples realistic?); **recall** the share of real samples
    inside the fake manifold (is every part of the data produced?). A collapsed generator keeps
    its precision and loses recall; use sets of equal size, since the radii shrink as a set grows.
    A few stray fake samples have large k-NN balls and can inflate recall, so **coverage**
    (Naeem et al., 2020) is also returned: the share of real samples whose own k-NN ball (among
    the real samples) holds at least one fake sample.
    """
    validate.ndim(real, 2, "real", "(n, d)")
    validate.ndim(fake, 2, "fake", "(m, d)")
    validate.same_size(real, fake, 1, "real", "fake")
    validate.positive_int(k, "k")
    if min(len(real), len(fake)) <= k:
        raise ValueError(
            f"each set needs more than k={k} samples, got {len(real)} real and {len(fake)} fake"
        )
    real, fake = real.float(), fake.float().to(real.device)
    covered = (torch.cdist(real, fake).min(dim=1).values <= _knn_radius(real, k)).float()
    return PrecisionRecall(
        precision=_knn_manifold(real, fake, k).float().mean().item(),
        recall=_knn_manifold(fake, real, k).float().mean().item(),
        coverage=covered.mean().item(),
    )
