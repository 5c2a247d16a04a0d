"""Back-of-the-envelope memory and communication per device for a parallel strategy.

:func:`estimate` is the model; :func:`widget` wraps it in ipywidgets sliders for the book.
Model states follow ZeRO's accounting (2 + 2 + ``K`` bytes per parameter, mixed-precision
Adam); communication counts the bytes each device *sends* per training step with ring
collectives (bandwidth-optimal, ``(N-1)/N`` of the data per volume), and converts them to
seconds at ``bandwidth_gb_s`` (the β term of the α–β model; latency ignored).

* ``dp``, ``zero1``, ``zero2``: one all-reduce (or reduce-scatter + all-gather) of the bf16
  gradients: ``2 (N-1)/N · 2Ψ`` bytes. ``zero3`` adds an all-gather of the weights:
  ``3 (N-1)/N · 2Ψ``.
* ``tp`` (Megatron, all devices in one tensor-parallel group): per layer, an all-reduce of the
  ``(tokens, d_model)`` activations after attention and after the MLP, in forward and again in
  backward: four all-reduces per layer.
* ``pp`` (one layer block per device): each device sends its activations forward and receives
  their gradients back: ``2 · tokens · d_model · 2`` bytes per step.
  ``tp`` and ``pp`` split the model states ``N`` ways too.
"""

from __future__ import annotations

from zen import validate
from zen.parallel.zero import zero_memory_per_device

STRATEGIES = ("dp", "zero1", "zero2", "zero3", "tp", "pp")
_STAGE = {"dp": 0, "zero1": 1, "zero2": 2, "zero3": 3, "tp": 3, "pp": 3}


def estimate(
    num_params: float = 7.5e9,
    devices: int = 64,
    strategy: str = "zero3",
    d_model: int = 4096,
    layers: int = 36,
    tokens: int = 8192,
    bandwidth_gb_s: float = 25.0,
    optimizer_bytes: float = 12,
) -> dict[str, float]:
    """Per-device model-state memory (GB) and bytes sent per step (GB, seconds) for ``strategy``.

    ``tokens`` is the number of tokens each device (or pipeline/tensor group) processes per
    step; ``d_model`` and ``layers`` matter only for ``tp`` and ``pp``. GB are 10⁹ bytes.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    n = validate.positive_int(devices, "devices")
    for name, value in (("d_model", d_model), ("layers", layers), ("tokens", tokens)):
        validate.positive_int(value, name)
    if not bandwidth_gb_s > 0:
        raise ValueError(f"bandwidth_gb_s must be positive, got {bandwidth_gb_s!r}")
    memory = zero_memory_per_device(num_params, n, _STAGE[strategy], optimizer_bytes)
    ring = (n - 1) / n
    activations = tokens * d_model * 2  # one bf16 (tokens, d_model) tensor
    if strategy == "tp":
        comm = 4 * layers * 2 * ring * activations
    elif strategy == "pp":
        comm = 2 * activations if n > 1 else 0.0
    else:
        comm = (3 if strategy == "zero3" else 2) * ring * 2 * num_params
    return {
        "memory_gb": memory / 1e9,
        "comm_gb_per_step": comm / 1e9,
        "comm_seconds": comm / (bandwidth_gb_s * 1e9),
    }


def widget():
    """Sliders for model size, devices and strategy, printing :func:`estimate`.

    Needs ipywidgets.
    """
    import ipywidgets as w

    def show(billions: float, devices: int, strategy: str, bandwidth_gb_s: float) -> None:
        e = estimate(billions * 1e9, devices, strategy, bandwidth_gb_s=bandwidth_gb_s)
        print(
            f"{strategy} on {devices} devices, {billions:g}B parameters:\n"
            f"  model states per device  {e['memory_gb']:8.2f} GB\n"
            f"  sent per device per step {e['comm_gb_per_step']:8.2f} GB  "
            f"(≈ {e['comm_seconds']:.2f} s at {bandwidth_gb_s:g} GB/s)"
        )

    return w.interactive(
        show,
        billions=w.FloatLogSlider(
            value=7.5, base=10, min=-1, max=3, step=0.05, description="params (B)"
        ),
        devices=w.IntSlider(value=64, min=1, max=1024, description="devices"),
        strategy=w.Dropdown(options=STRATEGIES, value="zero3", description="strategy"),
        bandwidth_gb_s=w.FloatSlider(value=25.0, min=1, max=900, step=1, description="GB/s"),
    )
