"""Multi-head (and grouped-query) attention with a key/value cache."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from zen import validate
from zen.attention.sdpa import causal_mask, check_mask, scaled_dot_product_attention


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``(B, L, h·d_head)`` → ``(B, h, L, d_head)``."""
    return rearrange(x, "b l (h d) -> b h l d", h=n_heads)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, h, L, d_head)`` → ``(B, L, h·d_head)`` (the inverse of :func:`split_heads`)."""
    return rearrange(x, "b h l d -> b l (h d)")


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Share each key/value head among ``n_rep`` query heads: ``(B, h_kv, S, d)`` → ``(B,
    h_kv·n_rep, S, d)``.

    Heads are repeated in place (``k0 k0 k1 k1`` for ``n_rep = 2``), so query head ``j`` meets
    key/value head ``j // n_rep``, as in Hugging Face's ``repeat_kv``.
    """
    validate.ndim(x, 4, "x", "(batch, n_kv_heads, seq, d_head)")
    validate.positive_int(n_rep, "n_rep")
    return repeat(x, "b h s d -> b (h r) s d", r=n_rep)


class KVCache:
    """Keys and values seen so far, ``(B, h, S_past, d_head)`` each; grows by one call at a time."""

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[-2]

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``k``, ``v`` ``(B, h, L_new, d_head)`` along the sequence; return all."""
        if self.k is None:
            self.k, self.v = k, v
        else:
            if k.shape[:2] != self.k.shape[:2] or k.shape[-1] != self.k.shape[-1]:
                raise ValueError(
                    f"new keys {tuple(k.shape)} do not match the cached keys {tuple(self.k.shape)}"
                )
            self.k = torch.cat([self.k, k], dim=-2)
            self.v = torch.cat([self.v, v], dim=-2)
        return self.k, self.v


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate ``q_proj``/``k_proj``/``v_proj``/``out_proj`` layers.

    Args:
        d_model: model width (input and output features).
        n_heads: number of heads; must divide ``d_model`` (``d_head = d_model // n_heads``).
        n_kv_heads: number of key/value heads (default ``n_heads``); must divide ``n_heads``.
            Fewer is grouped-query attention, 1 is multi-query attention.
        dropout: dropout on the attention weights during training.
        bias: whether the four projections have biases.
        qkv_bias: biases on the query, key and value projections only (default ``bias``;
            Qwen2 has them while its output projection has none).
        kdim, vdim: feature sizes of ``key`` and ``value`` inputs (default ``d_model``).
        rope: a :class:`zen.positions.RotaryEmbedding` (or any module mapping
            ``(B, h, L, d_head), offset`` to the same shape) applied to queries and keys.
        use_builtin: compute attention with ``F.scaled_dot_product_attention`` (fused kernels)
            instead of the readable :func:`scaled_dot_product_attention`; they agree to float
            rounding. Asking for the weights always takes the readable path.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        n_kv_heads: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        qkv_bias: bool | None = None,
        kdim: int | None = None,
        vdim: int | None = None,
        rope: nn.Module | None = None,
        use_builtin: bool = False,
    ) -> None:
        super().__init__()
        validate.positive_int(d_model, "d_model")
        validate.positive_int(n_heads, "n_heads")
        validate.divisible(d_model, n_heads, "d_model", "n_heads")
        validate.in_range(dropout, "dropout", 0.0, 1.0)
        self.n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        validate.positive_int(self.n_kv_heads, "n_kv_heads")
        validate.divisible(n_heads, self.n_kv_heads, "n_heads", "n_kv_heads")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.kdim, self.vdim = kdim or d_model, vdim or d_model
        self.dropout = dropout
        self.use_builtin = use_builtin
        qkv_bias = bias if qkv_bias is None else qkv_bias
        d_kv = self.n_kv_heads * self.d_head  # width of keys and values (d_model for MHA)
        self.q_proj = nn.Linear(d_model, d_model, bias=qkv_bias)
        self.k_proj = nn.Linear(self.kdim, d_kv, bias=qkv_bias)
        self.v_proj = nn.Linear(self.vdim, d_kv, bias=qkv_bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.rope = rope

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}, "
            f"d_head={self.d_head}, use_builtin={self.use_builtin}"
        )

    @torch.no_grad()
    def load_torch_weights(self, ref: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy the weights of a ``torch.nn.MultiheadAttention`` of the same size into this module.

        PyTorch stores q, k, v stacked in one ``in_proj_weight (3·d_model, d_model)``; its
        ``chunk(3)`` gives ``q_proj``, ``k_proj``, ``v_proj``. Returns ``self``.
        """
        if not isinstance(ref, nn.MultiheadAttention):
            raise TypeError(f"expected an nn.MultiheadAttention, got {type(ref).__name__}")
        if self.n_kv_heads != self.n_heads:
            raise ValueError(
                f"nn.MultiheadAttention has one key/value head per query head; this module has "
                f"n_kv_heads={self.n_kv_heads}, n_heads={self.n_heads}"
            )
        if ref.in_proj_weight is None or ref.bias_k is not None or ref.add_zero_attn:
            raise ValueError(
                "only nn.MultiheadAttention with kdim = vdim = embed_dim, no bias_k/bias_v and no "
                "add_zero_attn maps onto MultiHeadAttention"
            )
        if (ref.embed_dim, ref.num_heads) != (self.d_model, self.n_heads) or (
            self.kdim,
            self.vdim,
        ) != (self.d_model,) * 2:
            raise ValueError(
                f"size mismatch: nn.MultiheadAttention has embed_dim={ref.embed_dim}, "
                f"num_heads={ref.num_heads}; "
                f"this module has d_model={self.d_model}, n_heads={self.n_heads}, "
                f"kdim={self.kdim}, vdim={self.vdim}"
            )
        if (ref.in_proj_bias is None) != (self.q_proj.bias is None):
            raise ValueError(
                f"bias mismatch: nn.MultiheadAttention bias={ref.in_proj_bias is not None}, "
                f"this module bias={self.q_proj.bias is not None}"
            )
        projections = (self.q_proj, self.k_proj, self.v_proj)
        for proj, w in zip(projections, ref.in_proj_weight.chunk(3)):  # (3·d, d) -> three (d, d)
            proj.weight.copy_(w)
        if ref.in_proj_bias is not None:
            for proj, b in zip(projections, ref.in_proj_bias.chunk(3)):
                proj.bias.copy_(b)
        self.out_proj.load_state_dict(ref.out_proj.state_dict())
        return self

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        *,
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
        cache: KVCache | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Attend from ``query (B, L, d_model)`` to ``key (B, S, kdim)`` / ``value (B, S, vdim)``.

        ``key`` defaults to ``query`` (self-attention) and ``value`` to ``key``.

        Args:
            attn_mask: bool (``True`` = attend) or float (added), broadcastable to ``(B, h, L, S)``
                (for example ``(L, S)`` or ``(B, 1, L, S)``); ``S`` includes cached keys.
            key_padding_mask: bool ``(B, S)``, ``True`` marks padding keys to ignore.
            is_causal: query ``i`` sees keys up to its own position (bottom-right aligned
                when a cache holds earlier positions).
            need_weights: also return per-head weights ``(B, h, L, S)``.
            cache: a :class:`KVCache`; this call's keys and values are appended to it.

        Returns:
            ``out (B, L, d_model)`` or ``(out, weights)``.
        """
        key = query if key is None else key
        value = key if value is None else value
        self._check_inputs(query, key, value)

        q = split_heads(self.q_proj(query), self.n_heads)  # (B, L, d_model) -> (B, h, L, d_head)
        k = split_heads(self.k_proj(key), self.n_kv_heads)  # (B, S, kdim) -> (B, h_kv, S, d_head)
        v = split_heads(self.v_proj(value), self.n_kv_heads)  # (B, S, vdim) -> (B, h_kv, S, d_head)
        past = len(cache) if cache is not None else 0
        if self.rope is not None:
            q, k = self.rope(q, offset=past), self.rope(k, offset=past)
        if cache is not None:
            k, v = cache.update(k, v)  # (B, h_kv, past + S, d_head): the cache holds h_kv heads
        n_rep = self.n_heads // self.n_kv_heads
        B, L, S = query.shape[0], q.shape[-2], k.shape[-2]
        p = self.dropout if self.training else 0.0

        # The one fast/slow branch. The fused kernel never forms the weights, so asking for
        # them takes the readable path. Only a plain square causal mask is left to the kernel's
        # own is_causal flag; every other mask is built here, the same for both paths.
        fused = self.use_builtin and not need_weights
        kernel_causal = (
            fused
            and is_causal
            and attn_mask is None
            and key_padding_mask is None
            and past == 0
            and L == S
        )
        mask = self._combine_masks(
            attn_mask, key_padding_mask, is_causal and not kernel_causal, B, L, S, query
        )
        if fused:  # (B, h, L, d_head) -> (B, h, L, d_head)
            out, weights = (
                F.scaled_dot_product_attention(
                    q,
                    k,
                    v,
                    attn_mask=mask,
                    dropout_p=p,
                    is_causal=kernel_causal,
                    enable_gqa=n_rep > 1,
                ),
                None,
            )
        else:
            k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # (B, h_kv, S, d_head) -> (B, h, S, ·)
            out, weights = scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=p, return_weights=True
            )
        out = self.out_proj(merge_heads(out))  # (B, h, L, d_head) -> (B, L, d_model)
        return (out, weights) if need_weights else out

    def _check_inputs(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
        for name, t, d, axes in (
            ("query", query, self.d_model, "(batch, L, d_model)"),
            ("key", key, self.kdim, "(batch, S, kdim)"),
            ("value", value, self.vdim, "(batch, S, vdim)"),
        ):
            validate.ndim(t, 3, name, axes)
            validate.features(t, d, name)
        if key.shape[:2] != value.shape[:2] or key.shape[0] != query.shape[0]:
            raise ValueError(
                f"query, key, value must share the batch size and key/value the length: got query "
                f"{tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
            )

    def _combine_masks(
        self,
        attn_mask: torch.Tensor | None,
        key_padding_mask: torch.Tensor | None,
        is_causal: bool,
        B: int,
        L: int,
        S: int,
        query: torch.Tensor,
    ) -> torch.Tensor | None:
        """One mask broadcastable to ``(B, h, L, S)``: bool (True = attend) or float (additive)."""
        mask = None
        if attn_mask is not None:
            check_mask(attn_mask, torch.Size((B, self.n_heads, L, S)), query.dtype)
            mask = attn_mask
        if key_padding_mask is not None:
            validate.tensor(key_padding_mask, "key_padding_mask")
            if key_padding_mask.dtype != torch.bool:
                raise TypeError(
                    f"key_padding_mask must be bool (True = padding), got {key_padding_mask.dtype}"
                )
            if key_padding_mask.shape != (B, S):
                raise ValueError(
                    f"key_padding_mask must have shape (batch, S) = {(B, S)}, got "
                    f"{tuple(key_padding_mask.shape)}"
                )
            keep = rearrange(~key_padding_mask, "b s -> b 1 1 s")  # (B, S) -> (B, 1, 1, S)
            mask = keep if mask is None else _and(mask, keep)
        if is_causal:
            causal = causal_mask(
                L, S, offset=S - L, device=query.device
            )  # (L, S), bottom-right aligned
            mask = causal if mask is None else _and(mask, causal)
        return mask


def _and(mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Combine a bool or float mask with a bool ``keep`` mask (True = attend)."""
    if mask.dtype == torch.bool:
        return mask & keep
    return torch.where(
        keep, mask, torch.tensor(float("-inf"), dtype=mask.dtype, device=mask.device)
    )
