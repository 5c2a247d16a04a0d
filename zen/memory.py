"""Where a training step's memory goes, predicted from shapes and measured on any device.

A step holds four kinds of bytes. For ``N`` parameters,

* **model states** (ZeRO's accounting): weights, gradients and optimizer state, ``N · (p + g
  + K)`` bytes — ``4 + 4 + 8`` for fp32 Adam, ``2 + 2 + 12`` for mixed-precision Adam (16-bit
  weights and gradients; an fp32 master copy, first and second moments);
* **activations**: the tensors autograd saves for backward. For the readable pre- or post-norm
  :class:`zen.transformer.TransformerBlock` (LayerNorm, ungated GeLU FFN, ``use_builtin=False``)
  on ``B`` sequences of ``L`` tokens, width ``d``, ``h`` heads, FFN width ``f``, ``T = B·L``::

      elements  T·(8 d + 2 f + 4)          x, LN output, q, k, v (copies for the matmuls),
                                           attention output, the residual sum, LN output;
                                           fc1 output, GeLU output; two LayerNorms' mean, rstd
              + B·h·L·L · (2 + dropout)    softmax output, masked weights (+ dropout mask)
              + 2 T·d · dropout            the two residual dropout masks
      bytes     elements × itemsize  +  B·h·L (+ L·L if causal)   one-byte bool masks

  which is Korthikanti et al.'s ``34 s b h + 5 a s² b`` (16-bit, fused kernels) written for
  PyTorch's eager CPU/GPU kernels;
* temporaries inside an op, and allocator slack (not predicted).

The measuring side: :class:`SavedBytes` sums the storages autograd saves (through
``torch.autograd.graph.saved_tensors_hooks``, each storage once, parameters excluded);
:class:`LiveBytes` tracks the bytes of every tensor storage created while it is active and
their peak — an allocator counter for the CPU, where ``torch.cuda.max_memory_allocated`` has
no twin.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from zen import validate
from zen.parallel.zero import zero_memory_breakdown

# bytes of optimizer state per parameter in full precision (mixed precision adds a 4-byte
# fp32 master copy of the weights)
OPTIMIZER_STATE = {"sgd": 0, "momentum": 4, "adam": 8}


def num_params(model: nn.Module) -> int:
    """Number of trainable parameters (each shared tensor counted once)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_state_bytes(
    n_params: int, optimizer: str = "adam", mixed_precision: bool = False
) -> dict[str, float]:
    """Bytes of ``params``, ``grads`` and ``optim`` state for ``n_params`` parameters.

    Full precision: 4 + 4 + (0 SGD, 4 momentum, 8 Adam). Mixed precision: 16-bit weights and
    gradients (2 + 2) and the fp32 master weights beside the state (4 more): 2 + 2 + 12 for
    Adam. ZeRO's breakdown on one device (:func:`zen.parallel.zero.zero_memory_breakdown`).
    """
    validate.positive_int(n_params, "n_params")
    validate.one_of(optimizer, OPTIMIZER_STATE, "optimizer")
    if not isinstance(mixed_precision, bool):
        raise TypeError(f"mixed_precision must be a bool, got {type(mixed_precision).__name__}")
    k = OPTIMIZER_STATE[optimizer] + (4 if mixed_precision else 0)
    width = 2 if mixed_precision else 4
    return zero_memory_breakdown(n_params, 1, 0, k, width, width)


def block_activation_bytes(
    batch: int,
    seq_len: int,
    d_model: int,
    n_heads: int,
    d_ff: int | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    causal: bool = False,
    dropout: bool = False,
) -> int:
    """Bytes one readable Transformer block saves for backward (see the module docstring).

    For :class:`zen.transformer.TransformerBlock` with LayerNorms, an ungated FFN,
    ``use_builtin=False``, pre- or post-norm, in ``dtype``; ``dropout``: training with a
    dropout probability above 0 (each mask saved in ``dtype``, as PyTorch's eager kernels do).
    Includes the block's input.
    """
    b = validate.positive_int(batch, "batch")
    s = validate.positive_int(seq_len, "seq_len")
    d = validate.positive_int(d_model, "d_model")
    h = validate.positive_int(n_heads, "n_heads")
    validate.divisible(d, h, "d_model", "n_heads")
    f = 4 * d if d_ff is None else validate.positive_int(d_ff, "d_ff")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    tokens = b * s
    elements = (
        tokens * (8 * d + 2 * f + 4) + b * h * s * s * (2 + dropout) + 2 * tokens * d * dropout
    )
    bool_masks = b * h * s + (s * s if causal else 0)
    return elements * dtype.itemsize + bool_masks


def _storage_key(t: torch.Tensor) -> tuple[torch.device, int]:
    return (t.device, t.untyped_storage().data_ptr())


class SavedBytes:
    """Bytes of the tensors autograd saves for backward inside the ``with`` block.

    Each storage counts once (a view saved twice, or by two ops, is one tensor); the storages
    of ``exclude`` (pass ``model.parameters()``) are left out. ``nbytes`` is the total,
    ``records`` lists ``(nbytes, shape, dtype)`` per storage.
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()) -> None:
        self.exclude = {_storage_key(t) for t in exclude}
        self.storages: dict[tuple[torch.device, int], tuple[int, tuple[int, ...], torch.dtype]]
        self.storages = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in self.exclude and key not in self.storages:
            self.storages[key] = (t.untyped_storage().nbytes(), tuple(t.shape), t.dtype)
        return t

    @property
    def nbytes(self) -> int:
        return sum(n for n, _, _ in self.storages.values())

    @property
    def records(self) -> list[tuple[int, tuple[int, ...], torch.dtype]]:
        return list(self.storages.values())

    def __enter__(self) -> SavedBytes:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)


class LiveBytes(TorchDispatchMode):
    """Bytes of the tensor storages created by ops inside the ``with`` block that are alive.

    ``current()`` is the live total now; ``peak`` its maximum after any op (forward and
    backward, recomputation included). Storages that existed before the block (parameters,
    inputs) are not counted. Works on every device; on CUDA compare with
    ``torch.cuda.max_memory_allocated``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[tuple[torch.device, int], tuple[StorageWeakRef, int]] = {}
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        inputs = {
            _storage_key(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)
        }
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                key, storage = _storage_key(t), t.untyped_storage()
                known = self.live.get(key)
                if known is None and key in inputs:  # a view of (or in place on) an old storage
                    continue
                if known is None or known[0].expired():  # a new storage (or a reused address)
                    self.live[key] = (StorageWeakRef(storage), storage.nbytes())
        self.live = {k: v for k, v in self.live.items() if not v[0].expired()}
        self.peak = max(self.peak, self.current())
        return out

    def current(self) -> int:
        """Bytes alive now."""
        return sum(n for ref, n in self.live.values() if not ref.expired())
