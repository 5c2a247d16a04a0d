"""What every kernel launcher checks before it starts a Triton kernel."""

from __future__ import annotations

import torch
import triton

from zen import validate

#: whether the kernels, defined when ``zen.kernels`` is imported, run in Triton's interpreter
INTERPRETED = bool(triton.knobs.runtime.interpret)

#: dtypes the kernels accept (the interpreter cannot run bf16 ``tl.dot``: see :func:`check`)
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def interpreted(kernel: object) -> bool:
    """Whether ``kernel`` was defined under ``TRITON_INTERPRET=1`` (runs on the CPU)."""
    return type(kernel).__name__ == "InterpretedFunction"


def language_interpreted() -> bool:
    """Whether ``triton.language``'s own jitted helpers (``tl.cdiv``, ``tl.max``, ...) run in the
    interpreter: they are built when ``triton.language`` is first imported, which can happen
    before ``TRITON_INTERPRET=1`` is set (``torch.utils.flop_counter`` imports triton)."""
    import triton.language as tl

    return interpreted(tl.cdiv)


def check(x: torch.Tensor, name: str, kernel: object, uses_dot: bool = False) -> None:
    """Reject a tensor the Triton kernel cannot take: wrong dtype, or a device it cannot run on."""
    validate.tensor(x, name)
    if x.dtype not in DTYPES:
        raise TypeError(f"{name} must be float32, float16 or bfloat16, got {x.dtype}")
    if x.device.type == "cpu" and not interpreted(kernel):
        raise RuntimeError(
            f"{name} is on the CPU, where a Triton kernel runs only in Triton's interpreter: "
            "set the environment variable TRITON_INTERPRET=1 before importing zen.kernels "
            "(os.environ['TRITON_INTERPRET'] = '1'), or move the tensors to a CUDA device"
        )
    if x.device.type == "cpu" and not language_interpreted():
        raise RuntimeError(
            "triton.language was imported before TRITON_INTERPRET=1 was set, so its helpers are "
            "compiled while the zen.kernels kernels are interpreted, and the kernel would fail "
            "with 'Cannot call @triton.jit'd outside of the scope of a kernel'. Set "
            "os.environ['TRITON_INTERPRET'] = '1' before anything imports triton (note that "
            "torch.utils.flop_counter does), for example at the top of the notebook or conftest.py"
        )
    if x.device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name} must be on a CPU or CUDA device, got {x.device}")
    if uses_dot and x.dtype == torch.bfloat16 and interpreted(kernel):
        raise TypeError(
            f"{name} is bfloat16, but Triton's interpreter cannot run tl.dot in bfloat16: "
            "use float32 or float16 on the CPU (bfloat16 works on a GPU)"
        )
