"""GPU kernels written in Triton (the kernels chapter), each beside a plain-PyTorch tiled twin.

* :mod:`~zen.kernels.softmax` — a fused row softmax: one program per row, one read, one write;
* :mod:`~zen.kernels.matmul` — a tiled matrix product, masked at the edges, fp32 accumulator;
* :mod:`~zen.kernels.flash` — FlashAttention-2's forward (online softmax, causal or not, the
  log-sum-exp stored) and its backward in PyTorch from that log-sum-exp.

Importing this package imports ``triton`` (an optional dependency: ``pip install zen[kernels]``).
On CUDA tensors the kernels are compiled; on CPU tensors they run in Triton's interpreter, which
is chosen when the kernels are defined, so ``TRITON_INTERPRET=1`` must be in the environment
before this package is imported (a CPU call without it raises an error saying so).
"""

from zen.kernels.flash import flash_attention, flash_attention_reference
from zen.kernels.launch import INTERPRETED
from zen.kernels.matmul import matmul, matmul_reference
from zen.kernels.softmax import softmax

__all__ = [
    "INTERPRETED",
    "softmax",
    "matmul",
    "matmul_reference",
    "flash_attention",
    "flash_attention_reference",
]
