"""Benchmark: the GAN and VAE pieces of the GAN and VAE chapters against PyTorch built-ins.

    python benchmarks/bench_generative.py                  # CPU, torch's default threads
    python benchmarks/bench_generative.py --threads 1
    python benchmarks/bench_generative.py --device cuda --batch 4096

Three tables:

1. **losses** — ``zen.gan.discriminator_loss`` / ``generator_loss`` and ``zen.vae.gaussian_kl`` +
   ``bernoulli_log_likelihood`` against the same quantities from
   ``F.binary_cross_entropy_with_logits`` and ``torch.distributions.kl_divergence``
   (forward + backward, ``--n`` elements);
2. **the price of the gradient penalty** — one WGAN critic step with and without
   ``zen.gan.gradient_penalty`` (a second, ``create_graph`` backward through the critic);
3. **training steps** — steps per second of ``zen.gan.train_gan`` (non-saturating, WGAN-GP)
   and ``zen.vae.train_vae`` on 8×8 digits-sized data.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.distributions import Independent, Normal, kl_divergence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import forward_backward, interleaved_medians  # noqa: E402

from zen.gan import (  # noqa: E402
    MLPDiscriminator,
    MLPGenerator,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    train_gan,
    wgan_critic_loss,
)
from zen.vae import VAE, bernoulli_log_likelihood, gaussian_kl, train_vae  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--n", type=int, default=1_000_000, help="elements for the loss table")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--steps", type=int, default=200, help="training steps timed in table 3")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine()
    )
    print(
        f"device {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}\n"
    )
    g = torch.Generator().manual_seed(0)

    # 1. losses
    real = (3 * torch.randn(args.n, generator=g)).to(device).requires_grad_(True)
    fake = (3 * torch.randn(args.n, generator=g)).to(device).requires_grad_(True)
    rows = 64
    mu = torch.randn(args.n // rows, rows, generator=g).to(device).requires_grad_(True)
    logvar = torch.randn(args.n // rows, rows, generator=g).to(device).requires_grad_(True)
    x = torch.rand(args.n // rows, rows, generator=g).to(device)
    bce = F.binary_cross_entropy_with_logits
    pairs = {
        "discriminator loss": (
            lambda: discriminator_loss(real, fake),
            lambda: bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake)),
            [real, fake],
        ),
        "non-saturating G loss": (
            lambda: generator_loss(fake, "non_saturating"),
            lambda: bce(fake, torch.ones_like(fake)),
            [fake],
        ),
        "Gaussian KL": (
            lambda: gaussian_kl(mu, logvar).sum(),
            lambda: kl_divergence(
                Independent(Normal(mu, (0.5 * logvar).exp()), 1),
                Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1),
            ).sum(),
            [mu, logvar],
        ),
        "Bernoulli log-likelihood": (
            lambda: bernoulli_log_likelihood(x, mu).sum(),
            lambda: -bce(mu, x, reduction="sum"),
            [mu],
        ),
    }
    print(f"1. losses, forward + backward over {args.n:,} elements")
    print("| loss | zen ms | PyTorch ms | zen / PyTorch |\n|---|---:|---:|---:|")
    for label, (ours, ref, leaves) in pairs.items():
        t = interleaved_medians(
            {"ours": forward_backward(ours, leaves), "ref": forward_backward(ref, leaves)},
            device,
            2,
            args.repeats,
        )
        t_ours, t_ref = t["ours"], t["ref"]
        print(f"| {label} | {1e3 * t_ours:.2f} | {1e3 * t_ref:.2f} | {t_ours / t_ref:.2f} |")

    # 2. the gradient penalty
    torch.manual_seed(0)
    critic = MLPDiscriminator(64, hidden=256).to(device)
    opt = torch.optim.Adam(critic.parameters(), lr=1e-4)
    xr = torch.rand(args.batch, 64, generator=g).to(device)
    xf = torch.rand(args.batch, 64, generator=g).to(device)

    def critic_step(penalty: bool) -> Callable[[], None]:
        def run() -> None:
            loss = wgan_critic_loss(critic(xr), critic(xf))
            if penalty:
                loss = loss + 10 * gradient_penalty(critic, xr, xf, generator=g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return run

    t = interleaved_medians(
        {"plain": critic_step(False), "gp": critic_step(True)}, device, 2, args.repeats
    )
    plain, with_gp = t["plain"], t["gp"]
    print(f"\n2. one WGAN critic step (MLP 64-256-256-1, batch {args.batch})")
    print("| step | ms | ratio |\n|---|---:|---:|")
    print(f"| critic loss only | {1e3 * plain:.2f} | 1.00 |")
    print(f"| + gradient penalty | {1e3 * with_gp:.2f} | {with_gp / plain:.2f} |")

    # 3. training throughput
    data = torch.rand(2048, 64, generator=g).to(device)
    print(f"\n3. training on (2048, 64) data, batch {args.batch}, {args.steps} steps")
    print("| loop | steps/s |\n|---|---:|")
    for label, kwargs in {
        "train_gan non-saturating": dict(loss="non_saturating"),
        "train_gan WGAN-GP, 3 critic steps": dict(loss="wgan-gp", d_steps=3),
    }.items():
        torch.manual_seed(0)
        G, D = MLPGenerator(32, 64, hidden=256, output="sigmoid"), MLPDiscriminator(64, hidden=256)
        start = time.perf_counter()
        train_gan(G, D, data, steps=args.steps, batch_size=args.batch, progress=False, **kwargs)
        print(f"| {label} | {args.steps / (time.perf_counter() - start):.0f} |")
    torch.manual_seed(0)
    vae = VAE(64, latent_dim=8, hidden=128)
    epochs = max(1, args.steps * args.batch // len(data))
    start = time.perf_counter()
    train_vae(vae, data, epochs=epochs, batch_size=args.batch, progress=False)
    steps = epochs * -(-len(data) // args.batch)
    print(f"| train_vae (latent 8) | {steps / (time.perf_counter() - start):.0f} |")


if __name__ == "__main__":
    main()
