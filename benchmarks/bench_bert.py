"""Benchmark zen.bert against Hugging Face ``transformers.BertModel``.

Prints (1) forward time of the same-weights zen and HF models (zen readable attention, zen with
``F.scaled_dot_product_attention``, HF with its default attention) and the ratio zen / HF, and
(2) masked-LM pre-training throughput (tokens/s, forward + backward + AdamW step) of zen's
``BertForMaskedLM`` and HF's ``BertForMaskedLM``. HF computes the vocabulary head at every
position; zen's ``BertForMaskedLM.loss`` only at the ~15 % masked ones (the row "zen (fused), head
everywhere" is the like-for-like comparison).

    python benchmarks/bench_bert.py                  # CPU, small sizes
    python benchmarks/bench_bert.py --device cuda    # GPU: BERT-base sizes by default

Record results in benchmarks/RESULTS_bert.md with the device named.
"""

from __future__ import annotations

import argparse
import platform

import torch
import torch.nn.functional as F
from timing import interleaved_medians as timeit

from zen.bert import IGNORE_INDEX, BertForMaskedLM, BertModel, mask_tokens


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--size",
        choices=["mini", "small", "base"],
        default=None,
        help="mini: d=64, 2 layers (the chapter's model); small: d=256, 4 layers; base: BERT-base. "
        "Default: small on CPU, base on CUDA",
    )
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--train-steps", type=int, default=10)
    args = p.parse_args()

    import transformers

    device = torch.device(args.device)
    size = args.size or ("base" if device.type == "cuda" else "small")
    dims = {"mini": (64, 2, 4, 256), "small": (256, 4, 4, 1024), "base": (768, 12, 12, 3072)}[size]
    d, n_layers, heads, ff = dims
    batch = args.batch or (32 if device.type == "cuda" else 8)
    vocab = 30522 if size == "base" else 8192
    torch.manual_seed(0)
    hf_cfg = transformers.BertConfig(
        vocab_size=vocab,
        hidden_size=d,
        num_hidden_layers=n_layers,
        num_attention_heads=heads,
        intermediate_size=ff,
        max_position_embeddings=512,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads)"
    )
    print(f"device: {name}; torch {torch.__version__}, transformers {transformers.__version__}")
    print(
        f"model: {size} (d={d}, layers={n_layers}, heads={heads}, ff={ff}, vocab={vocab}); batch "
        f"{batch} x seq {args.seq}"
    )

    hf = transformers.BertModel(hf_cfg).to(device).eval()
    zen_readable = BertModel.from_hf(hf).eval()
    zen_fused = BertModel.from_hf(hf).eval()
    for layer in zen_fused.encoder.layers:
        layer.attn.use_builtin = True
    ids = torch.randint(5, vocab, (batch, args.seq), device=device)
    mask = torch.ones_like(ids)
    mask[batch // 2 :, args.seq * 3 // 4 :] = 0  # half the rows padded
    with torch.no_grad():
        diff = (
            (
                zen_readable(ids, attention_mask=mask)[0]
                - hf(ids, attention_mask=mask).last_hidden_state
            )
            .abs()
            .max()
        )
        t = timeit(
            {
                "hf": lambda: hf(ids, attention_mask=mask),
                "zr": lambda: zen_readable(ids, attention_mask=mask),
                "zf": lambda: zen_fused(ids, attention_mask=mask),
            },
            device,
            3,
            args.reps,
        )
        t_hf, t_zr, t_zf = t["hf"], t["zr"], t["zf"]
    print(f"\nforward (max |zen - HF| = {diff:.1e})")
    print(f"{'model':<32}{'ms / batch':>12}{'vs HF':>8}")
    for label, t in (
        ("HF BertModel", t_hf),
        ("zen BertModel (readable attn)", t_zr),
        ("zen BertModel (fused SDPA)", t_zf),
    ):
        print(f"{label:<32}{t * 1e3:>12.2f}{t / t_hf:>8.2f}")

    # ------------------------------------------------------------------ pre-training throughput
    print("\nMLM pre-training step (forward + backward + AdamW)")
    print(f"{'model':<32}{'tokens/s':>12}{'vs HF':>8}")
    g = torch.Generator().manual_seed(0)
    inputs, labels = mask_tokens(ids.cpu(), 3, [0, 1, 2, 3], vocab, generator=g)
    inputs, labels = inputs.to(device), labels.to(device)
    hf_mlm = transformers.BertForMaskedLM(hf_cfg).to(device).train()
    zen_mlm = BertForMaskedLM.from_hf(hf_mlm).train()
    zen_mlm_fused = BertForMaskedLM.from_hf(hf_mlm).train()
    for layer in zen_mlm_fused.bert.encoder.layers:
        layer.attn.use_builtin = True
    steps = {}
    for label, model, step in (
        ("HF BertForMaskedLM", hf_mlm, lambda m: m(input_ids=inputs, labels=labels).loss),
        (
            "zen (fused), head everywhere",
            zen_mlm_fused,
            lambda m: F.cross_entropy(
                m(inputs).flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX
            ),
        ),
        ("zen BertForMaskedLM (readable)", zen_mlm, lambda m: m.loss(inputs, labels)),
        ("zen BertForMaskedLM (fused)", zen_mlm_fused, lambda m: m.loss(inputs, labels)),
    ):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def train_step(model=model, step=step, opt=opt):
            loss = step(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        steps[label] = train_step
    rates = {
        label: batch * args.seq / t
        for label, t in timeit(steps, device, 2, args.train_steps).items()
    }
    for label, r in rates.items():
        print(f"{label:<32}{r:>12,.0f}{r / rates['HF BertForMaskedLM']:>8.2f}")


if __name__ == "__main__":
    main()
