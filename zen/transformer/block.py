"""One configurable Transformer block (:class:`BlockConfig`) on a residual stream."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from zen import activations, validate
from zen.attention import KVCache, MultiHeadAttention
from zen.transformer.layers import FeedForward, RMSNorm


@dataclass(frozen=True)
class BlockConfig:
    """The sizes and choices of one Transformer block.

    Attributes:
        d_model, n_heads: width of the residual stream and number of attention heads.
        d_ff: hidden width of the feed-forward network (``None``: ``4 · d_model``).
        dropout: dropout on the residual branches (and on the attention weights, unless
            ``attn_dropout`` is given).
        norm_first: pre-norm (GPT-2) rather than post-norm (the paper, BERT).
        causal: query ``i`` sees only keys ``j <= i`` (a decoder).
        cross_attention: add a sub-layer attending to ``memory`` (the seq2seq decoder).
        activation: a name in :data:`zen.activations.ACTIVATIONS`.
        layer_norm_eps, bias: the norms' epsilon; biases in linear layers and LayerNorms.
        use_builtin: attention through ``F.scaled_dot_product_attention``.
        norm: ``"layer"`` (LayerNorm) or ``"rms"`` (:class:`RMSNorm`, Llama).
        gated: a gated feed-forward network (SwiGLU with ``activation="silu"``, Llama).
        n_kv_heads: key/value heads of self-attention (default ``n_heads``; fewer is GQA).
        qkv_bias: biases on the query/key/value projections (default ``bias``; Qwen2).
    """

    d_model: int
    n_heads: int
    d_ff: int | None = None
    dropout: float = 0.0
    attn_dropout: float | None = None
    norm_first: bool = False
    causal: bool = False
    cross_attention: bool = False
    activation: str = "gelu"
    layer_norm_eps: float = 1e-5
    bias: bool = True
    use_builtin: bool = False
    norm: str = "layer"
    gated: bool = False
    n_kv_heads: int | None = None
    qkv_bias: bool | None = None

    def __post_init__(self) -> None:
        validate.positive_int(self.d_model, "d_model")
        validate.positive_int(self.n_heads, "n_heads")
        validate.divisible(self.d_model, self.n_heads, "d_model", "n_heads")
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        validate.positive_int(self.d_ff, "d_ff")
        validate.in_range(self.dropout, "dropout", 0.0, 1.0)
        if self.attn_dropout is not None:
            validate.in_range(self.attn_dropout, "attn_dropout", 0.0, 1.0)
        validate.one_of(self.activation, sorted(activations.ACTIVATIONS), "activation")
        validate.positive(self.layer_norm_eps, "layer_norm_eps")
        validate.one_of(self.norm, ("layer", "rms"), "norm")
        if self.n_kv_heads is not None:
            validate.positive_int(self.n_kv_heads, "n_kv_heads")
            validate.divisible(self.n_heads, self.n_kv_heads, "n_heads", "n_kv_heads")

    def make_norm(self) -> nn.Module:
        """A fresh norm of width ``d_model``: LayerNorm or RMSNorm, as ``norm`` says."""
        if self.norm == "rms":
            return RMSNorm(self.d_model, eps=self.layer_norm_eps)
        return nn.LayerNorm(self.d_model, eps=self.layer_norm_eps, bias=self.bias)


class TransformerBlock(nn.Module):
    """Self-attention (+ cross-attention) and a feed-forward network on a residual stream.

    Sub-modules, in order: ``attn`` + ``attn_norm``, (``cross_attn`` + ``cross_attn_norm``),
    ``ffn`` + ``ffn_norm``. ``rope`` (a :class:`zen.positions.RotaryEmbedding`) rotates the
    self-attention's queries and keys.
    """

    def __init__(self, config: BlockConfig, rope: nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(config, BlockConfig):
            raise TypeError(f"config must be a BlockConfig, got {type(config).__name__}")
        c = self.config = config
        p_attn = c.dropout if c.attn_dropout is None else c.attn_dropout
        self.norm_first, self.causal = c.norm_first, c.causal
        self.attn = MultiHeadAttention(
            c.d_model,
            c.n_heads,
            n_kv_heads=c.n_kv_heads,
            dropout=p_attn,
            bias=c.bias,
            qkv_bias=c.qkv_bias,
            rope=rope,
            use_builtin=c.use_builtin,
        )
        self.attn_norm = c.make_norm()
        self.cross_attn: MultiHeadAttention | None = None
        self.cross_attn_norm: nn.Module | None = None
        if c.cross_attention:
            self.cross_attn = MultiHeadAttention(
                c.d_model, c.n_heads, dropout=p_attn, bias=c.bias, use_builtin=c.use_builtin
            )
            self.cross_attn_norm = c.make_norm()
        self.ffn = FeedForward(c.d_model, c.d_ff, c.activation, c.bias, gated=c.gated)
        self.ffn_norm = c.make_norm()
        self.dropout = nn.Dropout(c.dropout)

    def extra_repr(self) -> str:
        return f"norm_first={self.norm_first}, causal={self.causal}"

    @torch.no_grad()
    def load_torch_weights(
        self, ref: nn.TransformerEncoderLayer | nn.TransformerDecoderLayer
    ) -> TransformerBlock:
        """Copy the weights of PyTorch's ``nn.TransformerEncoderLayer`` (or, for a block with
        cross-attention, ``nn.TransformerDecoderLayer``) of the same size into this block.
        Returns ``self``.

        Mapping: ``self_attn`` → ``attn``, ``multihead_attn`` → ``cross_attn``, ``linear1/2`` →
        ``ffn.fc1/fc2``, ``norm1`` → ``attn_norm``, then ``norm2`` (and ``norm3``) in sub-layer
        order. Only weights are copied: build the block with the layer's activation and LayerNorm
        epsilon.
        """
        decoder = isinstance(ref, nn.TransformerDecoderLayer)
        if not (decoder or isinstance(ref, nn.TransformerEncoderLayer)):
            raise TypeError(
                "expected nn.TransformerEncoderLayer or nn.TransformerDecoderLayer, "
                f"got {type(ref).__name__}"
            )
        if decoder != (self.cross_attn is not None):
            raise ValueError(
                "an nn.TransformerDecoderLayer maps onto a block with cross_attention=True, an "
                "nn.TransformerEncoderLayer onto one without; "
                f"this block has cross_attention={not decoder}"
            )
        if (
            self.config.norm != "layer"
            or self.config.gated
            or self.attn.n_kv_heads != self.attn.n_heads
        ):
            raise ValueError(
                "PyTorch's layers have LayerNorms, an ungated FFN and one key/value head per "
                f"query head; this block has norm={self.config.norm!r}, "
                f"gated={self.config.gated}, n_kv_heads={self.attn.n_kv_heads}"
            )
        if ref.norm_first != self.norm_first:
            raise ValueError(
                f"norm_first mismatch: PyTorch layer {ref.norm_first}, this block {self.norm_first}"
            )
        self.attn.load_torch_weights(ref.self_attn)
        norms = [self.attn_norm, self.ffn_norm]
        if decoder:
            self.cross_attn.load_torch_weights(ref.multihead_attn)
            norms = [self.attn_norm, self.cross_attn_norm, self.ffn_norm]
        for ours, theirs in zip(norms, (ref.norm1, ref.norm2, getattr(ref, "norm3", None))):
            ours.load_state_dict(theirs.state_dict())
        self.ffn.fc1.load_state_dict(
            ref.linear1.state_dict()
        )  # raises on a size mismatch, naming the shapes
        self.ffn.fc2.load_state_dict(ref.linear2.state_dict())
        return self

    def _residual(
        self, x: torch.Tensor, norm: nn.Module, sublayer: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        if self.norm_first:
            # pre-norm: the stream itself is never normalised
            return x + self.dropout(sublayer(norm(x)))
        return norm(x + self.dropout(sublayer(x)))  # post-norm: normalise after every addition

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        *,
        key_padding_mask: torch.Tensor | None = None,
        memory_key_padding_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """``x (B, L, d_model)``, ``memory (B, S, d_model)`` for cross-attention.

        Returns ``(B, L, d_model)``.

        Padding masks are bool ``(B, S)`` with ``True`` = padding (see :mod:`zen.attention`).
        """
        self._check_inputs(x, memory)

        def self_attention(h: torch.Tensor) -> torch.Tensor:  # (B, L, d) -> (B, L, d)
            return self.attn(
                h,
                attn_mask=attn_mask,
                key_padding_mask=key_padding_mask,
                is_causal=self.causal,
                cache=cache,
            )

        def cross_attention(
            h: torch.Tensor,
        ) -> torch.Tensor:  # (B, L, d), memory (B, S, d) -> (B, L, d)
            return self.cross_attn(h, memory, key_padding_mask=memory_key_padding_mask)

        x = self._residual(x, self.attn_norm, self_attention)
        if self.cross_attn is not None:
            x = self._residual(x, self.cross_attn_norm, cross_attention)
        return self._residual(x, self.ffn_norm, self.ffn)

    def _check_inputs(self, x: torch.Tensor, memory: torch.Tensor | None) -> None:
        validate.ndim(x, 3, "x", "(batch, L, d_model)")
        if self.cross_attn is not None and memory is None:
            raise ValueError("this block has cross-attention: pass memory (batch, S, d_model)")
        if self.cross_attn is None and memory is not None:
            raise ValueError(
                "memory was given but the block has no cross-attention (cross_attention=False)"
            )
