"""Benchmark: zen.llama.Llama against Hugging Face LlamaForCausalLM — forward and training.

CPU (default)::

    python benchmarks/bench_llama.py                  # a small Llama, zen vs HF, tokens/s
    python benchmarks/bench_llama.py --d-model 384 --layers 6 --kv-heads 2 --threads 1

Both models hold the same weights (zen's are copied with :meth:`zen.llama.Llama.from_hf`),
initialised at random; nothing is downloaded. zen runs its fused path (``use_builtin``:
``F.scaled_dot_product_attention`` with ``enable_gqa``) and, for comparison, its readable
path (attention written out, key/value heads repeated). Timings are medians of interleaved
repetitions (``benchmarks/timing.py``), so load on a shared machine hits every contender
alike; the ratio zen / HF is the number to read.

GPU (``--gpu``): a Llama-style model of about 124 M parameters (12 layers, d_model 768, 12
heads, 4 KV heads, SwiGLU 2048, vocab 32 000, sequence 1024) trained with bf16 autocast and
``torch.compile``, reporting tokens/s and MFU against the device's dense bf16 peak (FLOPs per
token ``6 N + 12 · L · d · T``, as for GPT, with ``N`` every parameter but the untied input
embedding). Not run where no GPU is present.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import forward_backward, interleaved_medians  # noqa: E402

from zen.llama import Llama  # noqa: E402

PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.0, "H200": 989.0, "A100": 312.0}


def make_models(args, device: torch.device):
    """A random Hugging Face Llama and zen's copy of it, in train mode, on ``device``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_cfg = LlamaConfig(vocab_size=args.vocab, hidden_size=args.d_model,
                         intermediate_size=args.d_ff, num_hidden_layers=args.layers,
                         num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
                         max_position_embeddings=args.seq, bos_token_id=0, eos_token_id=0,
                         pad_token_id=0)  # fmt: skip
    hf_cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    hf = LlamaForCausalLM(hf_cfg)
    ours = Llama.from_hf(hf)
    return ours.to(device).train(), hf.to(device).train()


def cpu_benchmark(args) -> None:
    device = torch.device("cpu")
    ours, hf = make_models(args, device)
    readable = Llama.from_hf(hf).train()
    for layer in readable.decoder.layers:
        layer.attn.use_builtin = False
    n = ours.num_parameters()
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "n/a"
    print(f"device: CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} "
          f"torch threads, load average {load}), torch {torch.__version__}")  # fmt: skip
    print(f"model: {args.layers} layers, d_model {args.d_model}, {args.heads} heads, "
          f"{args.kv_heads} KV heads, d_ff {args.d_ff}, vocab {args.vocab}, {n / 1e6:.2f} M "
          f"parameters; batch {args.batch} x {args.seq}; median of {args.reps} interleaved "
          f"repetitions")  # fmt: skip
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, args.vocab, (args.batch, args.seq), generator=g)
    y = torch.randint(0, args.vocab, (args.batch, args.seq), generator=g)
    with torch.no_grad():
        diff = (ours(x) - hf(x).logits).abs().max().item()
    print(f"same weights: max |zen − HF| logit difference {diff:.1e}")

    def loss(logits):
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())

    models = {"zen (fused)": ours, "zen (readable)": readable, "HF": hf}
    calls = {
        "forward": {k: (lambda m=m: _no_grad(m, x)) for k, m in models.items()},
        "training (fwd+bwd+AdamW)": {k: _train_step(m, x, loss) for k, m in models.items()},
    }
    tokens = x.numel()
    print("\n| workload | zen fused tokens/s | zen readable tokens/s | HF tokens/s | fused / HF |")
    print("|---|---:|---:|---:|---:|")
    for name, fns in calls.items():
        sec = interleaved_medians(fns, device, warmup=args.warmup, reps=args.reps)
        tps = {k: tokens / s for k, s in sec.items()}
        print(f"| {name} | {tps['zen (fused)']:,.0f} | {tps['zen (readable)']:,.0f} | "
              f"{tps['HF']:,.0f} | {tps['zen (fused)'] / tps['HF']:.2f} |")  # fmt: skip


def _no_grad(model, x):
    with torch.no_grad():
        model(x)


def _train_step(model, x, loss):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    forward = (lambda: model(x).logits) if not isinstance(model, Llama) else (lambda: model(x))
    backward = forward_backward(lambda: loss(forward()), list(model.parameters()))

    def step():
        backward()
        opt.step()

    return step


def gpu_benchmark(args) -> None:
    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device")
    device = torch.device("cuda")
    args.vocab, args.d_model, args.layers, args.heads, args.kv_heads = 32000, 768, 12, 12, 4
    args.d_ff, args.seq = 2048, 1024
    ours, _ = make_models(args, device)
    n = ours.num_parameters()
    c = ours.config
    n_matmul = n - c.vocab_size * c.d_model  # the input embedding is a lookup, not a product
    flops = 6 * n_matmul + 12 * c.n_layers * c.d_model * args.seq
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), args.peak_tflops)
    opt = torch.optim.AdamW(ours.parameters(), lr=1e-4, fused=True)
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randint(0, args.vocab, (args.batch, args.seq), device=device, generator=g)
    y = torch.randint(0, args.vocab, (args.batch, args.seq), device=device, generator=g)

    @torch.compile
    def loss_of(x, y):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = ours(x)
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.flatten())

    def step():
        loss_of(x, y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(args.warmup + 2):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize()
    tps = args.steps * x.numel() / (time.perf_counter() - start)
    mfu = flops * tps / (peak * 1e12) if peak else float("nan")
    print(f"device: {name}; {n / 1e6:.1f} M parameters, batch {args.batch} x {args.seq}")
    print(f"training: {tps:,.0f} tokens/s, {flops / 1e6:.0f} MFLOPs/token, MFU {mfu:.1%} "
          f"(peak {peak} TFLOP/s bf16)")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--d-ff", type=int, default=688)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=10, help="timed steps (--gpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--gpu", action="store_true", help="the 124 M bf16 + compile MFU run")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak for unknown GPUs")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu_benchmark(args) if args.gpu else cpu_benchmark(args)


if __name__ == "__main__":
    main()
