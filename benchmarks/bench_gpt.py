"""Benchmark: zen.gpt.GPT against Hugging Face GPT-2 — training and generation throughput.

CPU (default)::

    python benchmarks/bench_gpt.py                       # a small GPT, zen vs HF, tokens/s
    python benchmarks/bench_gpt.py --d-model 384 --layers 6 --steps 20

GPU (``--gpu``): one GPT-2-small-sized (124 M) training step with bf16 autocast and
``torch.compile``, reporting tokens/s and model FLOPs utilisation (MFU)::

    python benchmarks/bench_gpt.py --gpu                 # 124 M, batch 16 × 1024, 10 timed steps
    python benchmarks/bench_gpt.py --gpu --batch 32 --steps 50 --vocab 50304

MFU = (FLOPs per token × tokens per second) / the device's peak, with FLOPs per token
``6 N + 12 · L · H · Q · T`` (:func:`zen.gpt.flops_per_token`, PaLM appendix B). The peak is
dense bf16 tensor-core throughput: 989 TFLOP/s for H100 / H200 SXM, 756 for H100 PCIe, 312
for A100; pass ``--peak-tflops`` for other devices. Both models run the same weights (zen's
are copied from the HF model with :meth:`zen.gpt.GPT.from_hf`). All models have random
weights; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zen.gpt import GPT, GPTConfig, flops_per_token  # noqa: E402

PEAK_BF16_TFLOPS = {
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "H200": 989.0,
    "GH200": 989.0,
    "A100": 312.0,
    "L4": 121.0,
}


def peak_tflops(device_name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS.items():  # "H100 PCIe" is matched before "H100"
        if key in device_name:
            return value
    return None


def make_models(args, device):
    from transformers import GPT2Config, GPT2LMHeadModel

    hf_cfg = GPT2Config(
        vocab_size=args.vocab,
        n_positions=args.seq,
        n_embd=args.d_model,
        n_layer=args.layers,
        n_head=args.heads,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(hf_cfg)
    zen_model = GPT.from_hf(hf)
    return zen_model.to(device), hf.to(device), GPTConfig.from_hf(hf_cfg)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_throughput(forward, params, args, device, autocast: bool, compile: bool = False) -> float:
    """Tokens per second of forward + backward + AdamW over ``args.steps`` timed steps.

    With ``compile`` the forward pass *and* the cross-entropy are compiled together, so the
    ``(batch, seq, vocab)`` logits are never written out in float32.
    """
    opt = torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda")
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randint(0, args.vocab, (args.batch, args.seq), device=device, generator=g)
    y = torch.randint(0, args.vocab, (args.batch, args.seq), device=device, generator=g)

    def loss_of(x, y):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = forward(x)  # (batch, seq, vocab)
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.flatten())

    if compile:
        loss_of = torch.compile(loss_of, mode=getattr(args, "compile_mode", None))

    def step():
        loss = loss_of(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(device)
    return args.steps * x.numel() / (time.perf_counter() - start)


@torch.no_grad()
def generate_throughput(generate, args, device) -> float:
    """New tokens per second of greedy generation with a KV cache."""
    prompt = torch.randint(
        0,
        args.vocab,
        (args.gen_batch, args.prompt),
        device=device,
        generator=torch.Generator(device=device).manual_seed(1),
    )
    generate(prompt, 4)  # warm-up
    sync(device)
    start = time.perf_counter()
    out = generate(prompt, args.new_tokens)
    sync(device)
    assert out.shape[1] == args.prompt + args.new_tokens
    return args.gen_batch * args.new_tokens / (time.perf_counter() - start)


def cpu_benchmark(args) -> None:
    device = torch.device("cpu")
    zen_model, hf, cfg = make_models(args, device)
    n = zen_model.num_parameters()
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "n/a"
    print(
        f"device: CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        "torch threads, "
        f"load average {load}), torch {torch.__version__}"
    )
    print(
        f"model: {args.layers} layers, d_model {args.d_model}, {args.heads} heads, vocab "
        f"{args.vocab}, "
        f"{n / 1e6:.2f} M parameters; train batch {args.batch} x {args.seq}, {args.steps} timed "
        "steps"
    )

    rows = []
    zen_model.train(), hf.train()
    t_zen = train_throughput(zen_model, zen_model.parameters(), args, device, autocast=False)
    t_hf = train_throughput(lambda x: hf(x).logits, hf.parameters(), args, device, autocast=False)
    rows.append(("training (fwd+bwd+AdamW)", t_zen, t_hf))

    zen_model.eval(), hf.eval()

    def zen_gen(p, k):
        return zen_model.generate(p, k, temperature=0, use_cache=True)

    def hf_gen(p, k):
        return hf.generate(
            p,
            max_new_tokens=k,
            min_new_tokens=k,
            do_sample=False,
            use_cache=True,
            pad_token_id=0,
            attention_mask=torch.ones_like(p),
        )

    g_zen, g_hf = (
        generate_throughput(zen_gen, args, device),
        generate_throughput(hf_gen, args, device),
    )
    rows.append(
        (
            f"greedy generation, KV cache (batch {args.gen_batch}, {args.new_tokens} new)",
            g_zen,
            g_hf,
        )
    )

    def zen_nocache(p, k):
        return zen_model.generate(p, k, temperature=0, use_cache=False)

    g_nc = generate_throughput(zen_nocache, args, device)
    print(f"\n| {'workload':58s} | zen tokens/s | HF tokens/s | zen / HF |")
    print(f"|{'-' * 60}|-------------:|------------:|---------:|")
    for name, z, h in rows:
        print(f"| {name:58s} | {z:12,.0f} | {h:11,.0f} | {z / h:8.2f} |")
    print(
        f"| {'zen generation without the cache (recompute the prefix)':58s} | {g_nc:12,.0f} | "
        f"{'':11s} | "
        f"{g_nc / g_zen:7.2f}× of cached |"
    )


def gpu_benchmark(args) -> None:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--gpu needs a CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (smoke test)"
    peak = args.peak_tflops or peak_tflops(name)
    if peak is None:
        sys.exit(f"unknown peak bf16 TFLOP/s for {name!r}: pass --peak-tflops")
    zen_model, hf, cfg = make_models(args, device)
    fpt = flops_per_token(cfg, args.seq)
    n = zen_model.num_parameters()
    print(f"device: {name} (peak {peak:.0f} TFLOP/s dense bf16), torch {torch.__version__}")
    print(
        f"model: {args.layers} layers, d_model {args.d_model}, {args.heads} heads, vocab "
        f"{args.vocab}, "
        f"{n / 1e6:.1f} M parameters; batch {args.batch} x {args.seq}; {fpt / 1e6:.0f} "
        "MFLOP/token; "
        f"bf16 autocast, compile={not args.no_compile}, {args.steps} timed steps after "
        f"{args.warmup} warm-up"
    )

    results = []
    models = [("zen GPT", zen_model, lambda m: m)]
    if not args.no_hf:
        models.append(("HF GPT2LMHeadModel", hf, lambda m: lambda x: m(x).logits))
    else:
        del hf
    for label, model, wrap in models:
        model.train()
        tps = train_throughput(
            wrap(model),
            model.parameters(),
            args,
            device,
            autocast=True,
            compile=not args.no_compile,
        )
        mfu = fpt * tps / (peak * 1e12)
        results.append((label, tps, mfu))
        model.cpu()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print("\n| model | tokens/s | TFLOP/s | MFU |\n|---|---:|---:|---:|")
    for label, tps, mfu in results:
        print(f"| {label} | {tps:,.0f} | {fpt * tps / 1e12:.0f} | {mfu:.1%} |")
    if device.type == "cuda":
        print(f"\npeak memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--gpu", action="store_true", help="GPT-2-124M training step with bf16 + torch.compile, MFU"
    )
    p.add_argument("--steps", type=int, default=None, help="timed training steps (CPU 5, GPU 10)")
    p.add_argument(
        "--warmup", type=int, default=None, help="untimed steps first (CPU 2, GPU 5: compilation)"
    )
    p.add_argument("--batch", type=int, default=None, help="training batch (CPU 8, GPU 16)")
    p.add_argument("--seq", type=int, default=None, help="sequence length (CPU 128, GPU 1024)")
    p.add_argument("--d-model", type=int, default=None, help="width (CPU 256, GPU 768)")
    p.add_argument("--layers", type=int, default=None, help="depth (CPU 4, GPU 12)")
    p.add_argument("--heads", type=int, default=None, help="heads (CPU 4, GPU 12)")
    p.add_argument(
        "--vocab", type=int, default=None, help="vocabulary (CPU 8192, GPU 50257; 50304 is faster)"
    )
    p.add_argument("--gen-batch", type=int, default=1, help="generation batch (CPU)")
    p.add_argument("--prompt", type=int, default=16, help="prompt length for generation (CPU)")
    p.add_argument("--new-tokens", type=int, default=64, help="tokens to generate (CPU)")
    p.add_argument(
        "--peak-tflops", type=float, default=None, help="device peak bf16 TFLOP/s for MFU"
    )
    p.add_argument("--no-compile", action="store_true", help="GPU: skip torch.compile")
    p.add_argument(
        "--compile-mode",
        default=None,
        help="GPU: torch.compile mode, e.g. max-autotune-no-cudagraphs",
    )
    p.add_argument("--no-hf", action="store_true", help="GPU: skip the Hugging Face comparison")
    p.add_argument(
        "--device",
        default="cuda",
        help="--gpu mode's device (cpu: a quick smoke test of the script)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)"
    )
    args = p.parse_args(argv)
    defaults = (
        dict(steps=10, warmup=5, batch=16, seq=1024, d_model=768, layers=12, heads=12, vocab=50257)
        if args.gpu
        else dict(steps=5, warmup=2, batch=8, seq=128, d_model=256, layers=4, heads=4, vocab=8192)
    )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    (gpu_benchmark if args.gpu else cpu_benchmark)(args)


if __name__ == "__main__":
    main()
