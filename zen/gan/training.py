"""The alternating GAN training loop: ``d_steps`` critic updates, then ``g_steps`` generator
updates."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from einops import rearrange
from torch import nn
from tqdm.auto import tqdm

from zen import validate
from zen.device import generator as seeded_generator
from zen.gan.losses import (
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    wgan_critic_loss,
    wgan_generator_loss,
)
from zen.gan.networks import MLPDiscriminator, MLPGenerator

TRAIN_LOSSES = ("saturating", "non_saturating", "wgan-gp")


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
    """Alternate ``d_steps`` discriminator (critic) updates and one generator update, ``steps``
    times.

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
