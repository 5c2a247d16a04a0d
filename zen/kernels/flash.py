r"""FlashAttention-2: exact attention without the ``(L, S)`` score table in main memory.

Each program owns a block of ``BLOCK_M`` queries of one (batch, head). It walks over the keys in
blocks of ``BLOCK_N``, keeping per query the running maximum $m$, the running sum
$\ell = \sum_j e^{s_j - m}$ and the unnormalised output $o = \sum_j e^{s_j - m} v_j$ in
registers (the online softmax of the attention chapter), and divides by $\ell$ once at the end.
It stores the output and, per query, the log-sum-exp $m + \log \ell$ of its scores: all the
backward pass needs to rebuild any block of probabilities $P = e^{S - \mathrm{lse}}$ without
storing $P$. Causal attention skips the key blocks entirely after the query block.

    q (batch, heads, L, d_head), k, v (batch, heads, S, d_head) -> (batch, heads, L, d_head)
    lse (batch, heads, L), float32
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from zen import validate
from zen.kernels import launch

LOG2E = 1.4426950408889634  # exp(x) = exp2(x · log2 e): the GPU's exp2 is the fast one
HEAD_DIMS = (16, 32, 64, 128)


@triton.jit
def _flash_forward_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, L, S, qk_scale,
    D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
):  # fmt: skip
    start, bh = tl.program_id(0), tl.program_id(1)  # a block of queries of one (batch, head)
    rm = start * BLOCK_M + tl.arange(0, BLOCK_M)  # query rows
    rn = tl.arange(0, BLOCK_N)
    rd = tl.arange(0, D)
    q_ptr += bh * L * D
    k_ptr += bh * S * D
    v_ptr += bh * S * D
    q = tl.load(q_ptr + rm[:, None] * D + rd[None, :], mask=rm[:, None] < L, other=0.0)
    m = tl.full((BLOCK_M,), -float("inf"), dtype=tl.float32)  # running max (log2 units)
    ell = tl.zeros((BLOCK_M,), dtype=tl.float32)  # running Σ 2^(s - m)
    acc = tl.zeros((BLOCK_M, D), dtype=tl.float32)  # running Σ 2^(s - m) v
    end = S
    if CAUSAL:  # keys after the last query of this block are never needed
        end = tl.minimum(S, (start + 1) * BLOCK_M)
    for n0 in range(0, end, BLOCK_N):
        cols = n0 + rn
        k = tl.load(k_ptr + cols[:, None] * D + rd[None, :], mask=cols[:, None] < S, other=0.0)
        s = tl.dot(q, tl.trans(k)) * qk_scale  # (BLOCK_M, BLOCK_N) scores · log2 e / √d
        keep = cols[None, :] < S
        if CAUSAL:
            keep = keep & (cols[None, :] <= rm[:, None])
        s = tl.where(keep, s, -float("inf"))
        m_new = tl.maximum(m, tl.max(s, axis=1))
        alpha = tl.exp2(m - m_new)  # rescales the old terms to the new maximum
        p = tl.exp2(s - m_new[:, None])
        ell = ell * alpha + tl.sum(p, axis=1)
        v = tl.load(v_ptr + cols[:, None] * D + rd[None, :], mask=cols[:, None] < S, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m = m_new
    acc = acc / ell[:, None]
    lse = (m + tl.log2(ell)) / 1.4426950408889634  # back to natural log
    o = acc.to(o_ptr.dtype.element_ty)
    tl.store(o_ptr + bh * L * D + rm[:, None] * D + rd[None, :], o, mask=rm[:, None] < L)
    tl.store(lse_ptr + bh * L + rm, lse, mask=rm < L)


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> None:
    for name, x in (("q", q), ("k", k), ("v", v)):
        launch.check(x, name, _flash_forward_kernel, uses_dot=True)
        validate.ndim(x, 4, name, "(batch, heads, seq, d_head)")
    if k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(
            "q (batch, heads, L, d_head) and k, v (batch, heads, S, d_head) must agree: got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[3] not in HEAD_DIMS:
        raise ValueError(f"d_head must be one of {HEAD_DIMS}, got {q.shape[3]}")
    if q.shape[2] == 0 or k.shape[2] == 0:
        raise ValueError(f"sequences must not be empty, got L={q.shape[2]} and S={k.shape[2]}")
    if not (q.dtype == k.dtype == v.dtype and q.device == k.device == v.device):
        raise TypeError(f"q, k, v must share dtype and device: got {q.dtype}, {k.dtype}, {v.dtype}")
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be a bool, got {type(causal).__name__}")


def flash_attention_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Triton forward: ``(out (batch, heads, L, d_head), lse (batch, heads, L) float32)``.

    ``causal`` hides key ``j`` from query ``i`` when ``j > i`` (top-left aligned, as PyTorch's
    ``is_causal``).
    """
    _check(q, k, v, causal)
    B, H, L, D = q.shape
    S = k.shape[2]
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    out = torch.empty_like(q)
    lse = torch.empty(B, H, L, dtype=torch.float32, device=q.device)
    if launch.interpreted(_flash_forward_kernel):
        bm, bn, opts = 32, 32, {}
    else:
        bm, bn = 128, 64
        opts = {"num_warps": 4 if D <= 64 else 8, "num_stages": 3}
    grid = (triton.cdiv(L, bm), B * H)
    _flash_forward_kernel[grid](
        q, k, v, out, lse, L, S, LOG2E / math.sqrt(D),
        D=D, BLOCK_M=bm, BLOCK_N=bn, CAUSAL=causal, **opts,
    )  # fmt: skip
    return out, lse


def _causal_keep(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    return cols[None, :] <= rows[:, None]  # (L, T) True = attend


def flash_attention_backward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    grad_out: torch.Tensor,
    causal: bool = False,
    block: int = 128,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients ``(dq, dk, dv)`` in PyTorch, one block of keys at a time, from the saved
    log-sum-exp: ``P = exp(q kᵀ/√d - lse)`` is rebuilt per block, never stored whole.

    With ``Δ = rowsum(dO ∘ O)``: ``dV = Pᵀ dO``, ``dP = dO Vᵀ``, ``dS = P ∘ (dP - Δ)``,
    ``dQ = dS K / √d``, ``dK = dSᵀ Q / √d`` (FlashAttention-2's backward, in float32).
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    qf, dof = q.float(), grad_out.float()
    delta = (dof * out.float()).sum(-1, keepdim=True)  # (B, H, L, 1)
    rows = torch.arange(q.shape[2], device=q.device)
    dq = torch.zeros_like(qf)
    dk, dv = torch.empty_like(k, dtype=torch.float32), torch.empty_like(v, dtype=torch.float32)
    for j in range(0, k.shape[2], block):
        kj, vj = k[:, :, j : j + block].float(), v[:, :, j : j + block].float()  # (B, H, T, D)
        s = qf @ kj.transpose(-2, -1) * scale  # (B, H, L, T)
        if causal:
            s = s.masked_fill(
                ~_causal_keep(rows, torch.arange(j, j + kj.shape[2], device=q.device)),
                float("-inf"),
            )
        p = torch.exp(s - lse[..., None])  # the probabilities, rebuilt from the lse
        dv[:, :, j : j + block] = p.transpose(-2, -1) @ dof
        ds = p * (dof @ vj.transpose(-2, -1) - delta)  # (B, H, L, T)
        dq += ds @ kj * scale
        dk[:, :, j : j + block] = ds.transpose(-2, -1) @ qf * scale
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


class _FlashAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal):  # noqa: ANN001, D102
        out, lse = flash_attention_forward(q, k, v, causal)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.causal = causal
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001, D102
        q, k, v, out, lse = ctx.saved_tensors
        return (*flash_attention_backward(q, k, v, out, lse, grad_out, ctx.causal), None)


def flash_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False
) -> torch.Tensor:
    """``softmax(q kᵀ / √d_head) v`` by the Triton forward, differentiable (backward from the lse).

    q (batch, heads, L, d_head), k, v (batch, heads, S, d_head) -> (batch, heads, L, d_head).
    """
    return _FlashAttention.apply(q, k, v, causal)


def flash_attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False, block: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward kernel's algorithm in plain PyTorch, one ``(block × block)`` tile of scores at
    a time: ``(out, lse)`` like :func:`flash_attention_forward`. One iteration of the outer loop
    is one program of the kernel."""
    L, S, D = q.shape[2], k.shape[2], q.shape[3]
    out = torch.empty_like(q)
    lse = torch.empty(q.shape[:3], dtype=torch.float32, device=q.device)
    for i in range(0, L, block):
        qi = q[:, :, i : i + block].float()  # (B, H, T, D)
        rows = torch.arange(i, i + qi.shape[2], device=q.device)
        m = torch.full(qi.shape[:3], float("-inf"), device=q.device)  # (B, H, T) running max
        ell = torch.zeros_like(m)  # running Σ exp(s - m)
        acc = torch.zeros_like(qi)  # running Σ exp(s - m) v
        end = min(S, i + block) if causal else S
        for j in range(0, end, block):
            s = (
                qi @ k[:, :, j : j + block].float().transpose(-2, -1) / math.sqrt(D)
            )  # (B, H, T, T')
            if causal:
                s = s.masked_fill(
                    ~_causal_keep(rows, torch.arange(j, j + s.shape[-1], device=q.device)),
                    float("-inf"),
                )
            m_new = torch.maximum(m, s.amax(-1))
            alpha = torch.exp(m - m_new)
            p = torch.exp(s - m_new[..., None])
            ell = ell * alpha + p.sum(-1)
            acc = acc * alpha[..., None] + p @ v[:, :, j : j + block].float()
            m = m_new
        out[:, :, i : i + block] = (acc / ell[..., None]).to(q.dtype)
        lse[:, :, i : i + block] = m + torch.log(ell)
    return out, lse
