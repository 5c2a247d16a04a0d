"""Tensor parallelism (Megatron-LM): one layer's matrices split across ranks.

For ``Y = X A`` with ``A`` of shape ``(d_in, d_out)`` (``nn.Linear`` stores ``Aᵀ``):

* **column-parallel**: split ``A = [A_1 … A_p]`` by output columns; rank ``r`` computes
  ``Y_r = X A_r`` of shape ``(…, d_out / p)``. The input ``X`` is needed whole on every rank, so
  in backward the input gradients ``∂L/∂X = Σ_r ∂L/∂Y_r A_rᵀ`` must be summed: an all-reduce
  (operator ``f``: identity forward, all-reduce backward).
* **row-parallel**: split ``A`` by input rows; rank ``r`` takes its slice ``X_r`` of the
  input features and computes a partial ``X_r A_r``; the outputs are summed: an all-reduce in
  forward (operator ``g``: all-reduce forward, identity backward). The bias is added once,
  after the sum.

A transformer MLP ``GeLU(X A) B`` puts ``A`` column-parallel and ``B`` row-parallel: the GeLU is
element-wise, so it runs on each rank's slice with no communication in between. One ``f`` and
one ``g`` per block: **one all-reduce in forward and one in backward**. Attention splits by
heads the same way (Q, K, V column-parallel, the output projection row-parallel).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from zen import validate


class CommCounter:
    """Counts the all-reduces issued by the ``f`` and ``g`` operators (use as a context manager)."""

    active: CommCounter | None = None

    def __init__(self) -> None:
        self.forward = 0
        self.backward = 0

    def __enter__(self) -> CommCounter:
        CommCounter.active = self
        return self

    def __exit__(self, *exc: object) -> None:
        CommCounter.active = None


def _all_reduce(x: torch.Tensor, phase: str) -> torch.Tensor:
    x = x.contiguous()
    dist.all_reduce(x)
    if CommCounter.active is not None:
        setattr(CommCounter.active, phase, getattr(CommCounter.active, phase) + 1)
    return x


class _CopyToParallel(torch.autograd.Function):
    """``f``: identity in forward, all-reduce of the gradient in backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _all_reduce(grad.clone(), "backward")


class _ReduceFromParallel(torch.autograd.Function):
    """``g``: all-reduce in forward, identity in backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return _all_reduce(x.clone(), "forward")

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


def copy_to_parallel(x: torch.Tensor) -> torch.Tensor:
    return _CopyToParallel.apply(x)


def reduce_from_parallel(x: torch.Tensor) -> torch.Tensor:
    return _ReduceFromParallel.apply(x)


def _rank_world(world_size: int | None, rank: int | None) -> tuple[int, int]:
    if world_size is None:
        if not dist.is_initialized():
            raise RuntimeError("no process group: initialise one or pass world_size and rank")
        return dist.get_world_size(), dist.get_rank()
    validate.positive_int(world_size, "world_size")
    if rank is None or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size - 1}], got {rank}")
    return world_size, rank


def _divisible(size: int, world_size: int, what: str) -> None:
    if size % world_size:
        raise ValueError(f"world_size {world_size} must divide {what}, got {what}={size}")


class ColumnParallelLinear(nn.Module):
    """Rank's slice of ``nn.Linear(d_in, d_out)`` by output features.

    Shapes: ``(…, d_in) → (…, d_out / p)``.
    """

    def __init__(
        self, linear: nn.Linear, world_size: int | None = None, rank: int | None = None
    ) -> None:
        super().__init__()
        p, r = _rank_world(world_size, rank)
        _divisible(linear.out_features, p, "out_features")
        # nn.Linear stores weight as (d_out, d_in): output columns of A are rows here
        self.weight = nn.Parameter(
            linear.weight.detach().chunk(p, dim=0)[r].clone()
        )  # (d_out/p, d_in)
        self.bias = (
            None if linear.bias is None else nn.Parameter(linear.bias.detach().chunk(p)[r].clone())
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(copy_to_parallel(x), self.weight, self.bias)


class RowParallelLinear(nn.Module):
    """Rank's slice of ``nn.Linear(d_in, d_out)`` by input features.

    Shapes: ``(…, d_in / p) → (…, d_out)``, the outputs summed over ranks.
    """

    def __init__(
        self, linear: nn.Linear, world_size: int | None = None, rank: int | None = None
    ) -> None:
        super().__init__()
        p, r = _rank_world(world_size, rank)
        _divisible(linear.in_features, p, "in_features")
        self.weight = nn.Parameter(
            linear.weight.detach().chunk(p, dim=1)[r].clone()
        )  # (d_out, d_in/p)
        self.bias = (
            None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())
        )  # (d_out,) whole

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = reduce_from_parallel(F.linear(x, self.weight))
        return out if self.bias is None else out + self.bias


class ParallelMLP(nn.Module):
    """``fc2(act(fc1(x)))`` with ``fc1`` column- and ``fc2`` row-parallel: ``(…, d) → (…, d)``."""

    def __init__(
        self,
        fc1: nn.Linear,
        fc2: nn.Linear,
        activation: Callable[[torch.Tensor], torch.Tensor] = F.gelu,
        world_size: int | None = None,
        rank: int | None = None,
    ) -> None:
        super().__init__()
        if fc1.out_features != fc2.in_features:
            raise ValueError(
                f"fc1.out_features ({fc1.out_features}) must equal "
                f"fc2.in_features ({fc2.in_features})"
            )
        self.fc1 = ColumnParallelLinear(fc1, world_size, rank)
        self.fc2 = RowParallelLinear(fc2, world_size, rank)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(x)))  # (…, d) → (…, d_ff/p) → (…, d)


class ParallelSelfAttention(nn.Module):
    """Multi-head self-attention with the heads split across ranks.

    Built from ``nn.MultiheadAttention``. Input and output ``(batch, seq, d_model)``; each rank
    computes ``heads / p`` heads. The Q/K/V projection is column-parallel, the output projection
    row-parallel.
    """

    def __init__(
        self, mha: nn.MultiheadAttention, world_size: int | None = None, rank: int | None = None
    ) -> None:
        super().__init__()
        p, r = _rank_world(world_size, rank)
        if not mha.batch_first or not mha._qkv_same_embed_dim:
            raise ValueError("mha must be built with batch_first=True and equal q/k/v dimensions")
        _divisible(mha.num_heads, p, "num_heads")
        d, self.heads = mha.embed_dim, mha.num_heads // p
        w_q, w_k, w_v = mha.in_proj_weight.detach().chunk(3)  # each (d, d)
        qkv = nn.Linear(d, 3 * d // p, bias=mha.in_proj_bias is not None)
        # rank r's heads: the same row block of each of W_q, W_k, W_v
        qkv.weight = nn.Parameter(torch.cat([w.chunk(p)[r] for w in (w_q, w_k, w_v)]))  # (3d/p, d)
        if mha.in_proj_bias is not None:
            qkv.bias = nn.Parameter(
                torch.cat([b.chunk(p)[r] for b in mha.in_proj_bias.detach().chunk(3)])
            )
        self.qkv = ColumnParallelLinear(
            qkv, world_size=1, rank=0
        )  # already sliced; keep f in forward
        self.out = RowParallelLinear(mha.out_proj, p, r)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # each (batch, seq, d/p)
        q, k, v = (rearrange(t, "b s (h e) -> b h s e", h=self.heads) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=causal
        )  # (batch, heads/p, seq, d_head)
        return self.out(rearrange(y, "b h s e -> b s (h e)"))  # (batch, seq, d)
