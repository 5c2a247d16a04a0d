"""Back-of-the-envelope memory, idle time and traffic per device for a 3-D parallel layout.

A layout puts ``dp × tp × pp`` devices to work: ``tp``-way tensor parallel inside a node,
``pp`` pipeline stages, ``dp`` data-parallel replicas (with ZeRO ``zero_stage`` among them).
Per device, :func:`estimate` adds up

* **model states** — ZeRO's accounting (2 + 2 + ``K`` bytes per parameter, mixed-precision
  Adam) for the ``Ψ / (tp · pp)`` parameters of one device's slice, sharded ``dp`` ways by ZeRO;
* **activations** — Korthikanti et al. (2022), Table 2, per layer and micro-batch of ``b``
  sequences of ``s`` tokens (16-bit activations, 1-byte dropout masks, ``a`` heads)::

      no recomputation            s b h (10 + 24/t + 5 a s / (h t))
      + sequence parallel         s b h (34/t + 5 a s / (h t))
      selective recomputation     drops the 5 a s / (h t) term (softmax, its dropout, attn·V)
      full recomputation          2 s b h (only each layer's input is kept)

  times the ``L / pp`` layers of a stage and the micro-batches in flight at its first stage
  under 1F1B, ``min(pp, m)``;
* **the pipeline bubble** ``(pp - 1) / (m + pp - 1)``: the share of time each device idles;
* **bytes sent per step** with ring collectives (``(N-1)/N`` of the data per volume):
  gradients over ``dp`` (×1.5 for ZeRO-3), four all-reduces of a ``(s b, h)`` activation per
  layer and micro-batch over ``tp``, one activation forward and its gradient back per
  micro-batch over ``pp``; seconds at ``bandwidth_gb_s`` (the β term; latency ignored).

Impossible layouts are refused: more stages than layers, ``tp`` not dividing the heads, or
tensor parallelism wider than a node.
"""

from __future__ import annotations

from zen import validate
from zen.parallel.zero import zero_memory_per_device

RECOMPUTE = ("none", "selective", "full")


def activation_bytes_per_layer(
    seq_len: int,
    micro_batch: int,
    d_model: int,
    n_heads: int,
    tp: int = 1,
    sequence_parallel: bool = False,
    recompute: str = "none",
    mask_bytes: float = 1,
) -> float:
    """Bytes of activations one transformer layer keeps for backward (Korthikanti et al., 2022).

    16-bit activations and ``mask_bytes`` per dropout-mask element (1 in the paper's fused GPU
    kernels; PyTorch's CPU dropout keeps its mask in the activation dtype, 2). LayerNorm's
    per-token statistics (a few bytes per token) are left out, as in the paper. Per token and
    layer: LayerNorm inputs 2 + 2, the inputs of the QKV and first MLP matmuls 2 + 2, two
    dropout masks (unsplit by ``tp``); Q, K, V 6, the output projection's input 2, GeLU's input
    and output 8 + 8 (split ``tp`` ways); per head and key the softmax output 2, its dropout
    mask and output.
    """
    s = validate.positive_int(seq_len, "seq_len")
    b = validate.positive_int(micro_batch, "micro_batch")
    h = validate.positive_int(d_model, "d_model")
    a = validate.positive_int(n_heads, "n_heads")
    t = validate.positive_int(tp, "tp")
    if mask_bytes < 0:
        raise ValueError(f"mask_bytes must be non-negative, got {mask_bytes!r}")
    if recompute not in RECOMPUTE:
        raise ValueError(f"recompute must be one of {RECOMPUTE}, got {recompute!r}")
    if a % t:
        raise ValueError(f"tp={t} must divide n_heads={a}: each rank computes whole heads")
    if recompute == "full":
        return 2 * s * b * h
    # softmax output, its dropout mask and dropout output: recomputed under "selective"
    core = 0 if recompute == "selective" else (4 + mask_bytes) * a * s / (h * t)
    unsplit = 8 + 2 * mask_bytes  # 10 with 1-byte masks
    per_token = (unsplit + 24) / t if sequence_parallel else unsplit + 24 / t
    return s * b * h * (per_token + core)


def estimate(
    num_params: float = 7.5e9,
    dp: int = 64,
    tp: int = 1,
    pp: int = 1,
    zero_stage: int = 3,
    n_layers: int = 36,
    d_model: int = 4096,
    n_heads: int = 32,
    seq_len: int = 2048,
    micro_batch: int = 1,
    num_micro: int = 8,
    recompute: str = "none",
    sequence_parallel: bool = False,
    gpus_per_node: int = 8,
    bandwidth_gb_s: float = 25.0,
    optimizer_bytes: float = 12,
) -> dict[str, float]:
    """Per-device memory (GB), bubble and traffic of a ``dp × tp × pp`` layout.

    ``num_micro`` micro-batches of ``micro_batch`` sequences per step and replica (gradient
    accumulation when ``pp = 1``). GB are 10⁹ bytes. Returns ``model_states_gb``,
    ``activations_gb``, ``total_gb``, ``bubble``, ``comm_gb_per_step``, ``comm_seconds``.
    """
    for name, value in (("dp", dp), ("tp", tp), ("pp", pp), ("n_layers", n_layers)):
        validate.positive_int(value, name)
    m = validate.positive_int(num_micro, "num_micro")
    validate.positive_int(gpus_per_node, "gpus_per_node")
    if pp > n_layers:
        raise ValueError(
            f"pp={pp} pipeline stages cannot exceed the model's n_layers={n_layers}: "
            "every stage needs at least one layer"
        )
    if tp > gpus_per_node:
        raise ValueError(
            f"tp={tp} exceeds gpus_per_node={gpus_per_node}: tensor parallelism all-reduces "
            "activations in every layer and must stay inside one node"
        )
    if d_model % n_heads:
        raise ValueError(f"n_heads={n_heads} must divide d_model={d_model}")
    if not bandwidth_gb_s > 0:
        raise ValueError(f"bandwidth_gb_s must be positive, got {bandwidth_gb_s!r}")
    per_layer = activation_bytes_per_layer(
        seq_len, micro_batch, d_model, n_heads, tp, sequence_parallel, recompute
    )
    slice_params = num_params / (tp * pp)
    states = zero_memory_per_device(slice_params, dp, zero_stage, optimizer_bytes)
    activations = per_layer * (n_layers / pp) * min(pp, m)
    tokens = seq_len * micro_batch
    activation = tokens * d_model * 2  # one bf16 (tokens, d_model) tensor
    grads = (3 if zero_stage == 3 else 2) * (dp - 1) / dp * 2 * slice_params
    tensor = 4 * (n_layers / pp) * m * 2 * (tp - 1) / tp * activation
    pipeline = 2 * m * activation / tp if pp > 1 else 0.0
    comm = grads + tensor + pipeline
    return {
        "model_states_gb": states / 1e9,
        "activations_gb": activations / 1e9,
        "total_gb": (states + activations) / 1e9,
        "bubble": (pp - 1) / (m + pp - 1),
        "comm_gb_per_step": comm / 1e9,
        "comm_seconds": comm / (bandwidth_gb_s * 1e9),
    }


def widget():
    """Sliders for model size and layout, printing :func:`estimate` (or its error).

    Needs ipywidgets.
    """
    import ipywidgets as w

    def show(
        billions: float, dp: int, tp: int, pp: int, zero_stage: int, num_micro: int, recompute: str
    ) -> None:
        try:
            e = estimate(
                billions * 1e9, dp, tp, pp, zero_stage, num_micro=num_micro, recompute=recompute
            )
        except ValueError as err:
            print("impossible layout:", err)
            return
        print(
            f"{dp * tp * pp} devices (dp={dp} × tp={tp} × pp={pp}), {billions:g}B parameters:\n"
            f"  model states {e['model_states_gb']:8.2f} GB + activations "
            f"{e['activations_gb']:8.2f} GB = {e['total_gb']:8.2f} GB per device\n"
            f"  pipeline bubble {e['bubble']:.0%}; sent per device per step "
            f"{e['comm_gb_per_step']:.2f} GB (≈ {e['comm_seconds']:.2f} s at 25 GB/s)"
        )

    return w.interactive(
        show,
        billions=w.FloatLogSlider(
            value=7.5, base=10, min=-1, max=3, step=0.05, description="params (B)"
        ),
        dp=w.IntSlider(value=64, min=1, max=1024, description="dp"),
        tp=w.Dropdown(options=[1, 2, 4, 8], value=1, description="tp"),
        pp=w.IntSlider(value=1, min=1, max=36, description="pp"),
        zero_stage=w.Dropdown(options=[0, 1, 2, 3], value=3, description="ZeRO"),
        num_micro=w.IntSlider(value=8, min=1, max=128, description="micro-batches"),
        recompute=w.Dropdown(options=RECOMPUTE, value="none", description="recompute"),
    )
