"""The Transformer block and the stacks built from it.

One configurable block serves the whole book: the original encoder–decoder (post-norm,
Vaswani et al., 2017), BERT (post-norm, GELU) and GPT-2 (pre-norm, GELU, causal, final
LayerNorm). Every sub-layer adds into the *residual stream* ``x (B, L, d_model)``::

    post-norm (paper, BERT):  x = LN(x + Dropout(Sublayer(x)))
    pre-norm  (GPT-2, most LLMs): x = x + Dropout(Sublayer(LN(x)))      (+ a final LN after the stack)

API
---
:class:`FeedForward` ``(d_model, d_ff, activation, bias)``
    ``fc2(act(fc1(x)))``, ``(B, L, d_model) → (B, L, d_ff) → (B, L, d_model)``.
    Activations: ``"relu"`` (paper), ``"gelu"`` (exact, BERT), ``"gelu_tanh"`` (GPT-2's
    ``gelu_new``), ``"silu"``.

:class:`TransformerBlock` ``(d_model, n_heads, d_ff=4·d_model, dropout=0.0, attn_dropout=None,
norm_first=False, causal=False, activation="gelu", layer_norm_eps=1e-5, bias=True,
cross_attention=False, rope=None, use_builtin=False)``
    Sub-modules, in order: ``attn`` + ``attn_norm``, (``cross_attn`` + ``cross_attn_norm``
    when ``cross_attention``), ``ffn`` + ``ffn_norm``. Weight mapping:

    ===================  ======================================  ============================
    zen                  HF ``BertModel.encoder.layer[i]``       HF ``GPT2LMHeadModel.transformer.h[i]``
    ===================  ======================================  ============================
    ``attn.q/k/v_proj``  ``attention.self.query/key/value``      ``attn.c_attn`` (split, transpose)
    ``attn.out_proj``    ``attention.output.dense``              ``attn.c_proj`` (transpose)
    ``attn_norm``        ``attention.output.LayerNorm``          ``ln_1``
    ``ffn.fc1``          ``intermediate.dense``                  ``mlp.c_fc`` (transpose)
    ``ffn.fc2``          ``output.dense``                        ``mlp.c_proj`` (transpose)
    ``ffn_norm``         ``output.LayerNorm``                    ``ln_2``
    ===================  ======================================  ============================

    GPT-2's ``Conv1D`` stores weights as ``(in, out)``, the transpose of ``nn.Linear``; see
    :mod:`zen.attention` for splitting the fused ``c_attn``. BERT: ``norm_first=False,
    activation="gelu", layer_norm_eps=1e-12``; GPT-2: ``norm_first=True, causal=True,
    activation="gelu_tanh"``.

    ``forward(x, memory=None, *, key_padding_mask=None, memory_key_padding_mask=None,
    attn_mask=None, cache=None) → (B, L, d_model)``. Padding masks are bool ``(B, S)`` with
    ``True`` = padding (see :mod:`zen.attention`).

:class:`Encoder` / :class:`Decoder`
    ``n_layers`` blocks in ``layers`` plus ``norm`` (a final LayerNorm, by default only for
    pre-norm stacks). ``Decoder`` is causal with cross-attention to ``memory``;
    ``Decoder(cross_attention=False)`` is a GPT-style decoder-only stack.

Positions: :func:`sinusoidal_positions` / :class:`SinusoidalPositionalEncoding` (paper),
:class:`LearnedPositionalEmbedding` (BERT, GPT-2; parameter ``weight (max_len, d_model)``),
:class:`RotaryEmbedding` (RoPE, Su et al. 2021; rotates queries and keys inside attention).

:class:`EncoderDecoder`
    The paper's model for sequence-to-sequence tasks: embeddings scaled by ``√d_model`` plus
    positions, an :class:`Encoder`, a :class:`Decoder` and an output projection tied to the
    target embedding; ``forward(src, tgt_in) → logits (B, T, tgt_vocab)`` and
    :meth:`EncoderDecoder.greedy_decode`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from zen import validate
from zen.attention import KVCache, MultiHeadAttention

__all__ = [
    "ACTIVATIONS",
    "FeedForward",
    "TransformerBlock",
    "Encoder",
    "Decoder",
    "sinusoidal_positions",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
    "RotaryEmbedding",
    "EncoderDecoder",
]

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}


def _activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


class FeedForward(nn.Module):
    """Position-wise feed-forward network ``fc2(act(fc1(x)))``: ``(..., d_model) → (..., d_model)``."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu", bias: bool = True) -> None:
        super().__init__()
        validate.positive_int(d_model, "d_model")
        validate.positive_int(d_ff, "d_ff")
        self.act = _activation(activation)
        self.activation = activation
        self.fc1 = nn.Linear(d_model, d_ff, bias=bias)
        self.fc2 = nn.Linear(d_ff, d_model, bias=bias)

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))  # (..., d_model) -> (..., d_ff) -> (..., d_model)


class TransformerBlock(nn.Module):
    """Self-attention (+ optional cross-attention) and a feed-forward network on a residual stream.

    See the module docstring for the arguments and the weight mapping to BERT and GPT-2.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int | None = None,
        dropout: float = 0.0,
        attn_dropout: float | None = None,
        norm_first: bool = False,
        causal: bool = False,
        activation: str = "gelu",
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
        cross_attention: bool = False,
        rope: nn.Module | None = None,
        use_builtin: bool = False,
    ) -> None:
        super().__init__()
        d_ff = 4 * d_model if d_ff is None else d_ff
        validate.in_range(dropout, "dropout", 0.0, 1.0)
        attn_dropout = dropout if attn_dropout is None else attn_dropout
        self.norm_first, self.causal = norm_first, causal
        self.attn = MultiHeadAttention(d_model, n_heads, attn_dropout, bias, rope=rope, use_builtin=use_builtin)
        self.attn_norm = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.cross_attn: MultiHeadAttention | None = None
        self.cross_attn_norm: nn.LayerNorm | None = None
        if cross_attention:
            self.cross_attn = MultiHeadAttention(d_model, n_heads, attn_dropout, bias, use_builtin=use_builtin)
            self.cross_attn_norm = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.ffn = FeedForward(d_model, d_ff, activation, bias)
        self.ffn_norm = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def extra_repr(self) -> str:
        return f"norm_first={self.norm_first}, causal={self.causal}"

    @torch.no_grad()
    def load_torch_weights(self, ref: nn.TransformerEncoderLayer | nn.TransformerDecoderLayer) -> TransformerBlock:
        """Copy the weights of PyTorch's ``nn.TransformerEncoderLayer`` (or, for a block with
        cross-attention, ``nn.TransformerDecoderLayer``) of the same size into this block. Returns ``self``.

        Mapping: ``self_attn`` → ``attn``, ``multihead_attn`` → ``cross_attn``, ``linear1/2`` →
        ``ffn.fc1/fc2``, ``norm1`` → ``attn_norm``, then ``norm2`` (and ``norm3``) in sub-layer order.
        Only weights are copied: build the block with the layer's activation and LayerNorm epsilon.
        """
        decoder = isinstance(ref, nn.TransformerDecoderLayer)
        if not (decoder or isinstance(ref, nn.TransformerEncoderLayer)):
            raise TypeError(f"expected nn.TransformerEncoderLayer or nn.TransformerDecoderLayer, got {type(ref).__name__}")
        if decoder != (self.cross_attn is not None):
            raise ValueError("an nn.TransformerDecoderLayer maps onto a block with cross_attention=True, an "
                             f"nn.TransformerEncoderLayer onto one without; this block has cross_attention={not decoder}")
        if ref.norm_first != self.norm_first:
            raise ValueError(f"norm_first mismatch: PyTorch layer {ref.norm_first}, this block {self.norm_first}")
        self.attn.load_torch_weights(ref.self_attn)
        norms = [self.attn_norm, self.ffn_norm]
        if decoder:
            self.cross_attn.load_torch_weights(ref.multihead_attn)
            norms = [self.attn_norm, self.cross_attn_norm, self.ffn_norm]
        for ours, theirs in zip(norms, (ref.norm1, ref.norm2, getattr(ref, "norm3", None))):
            ours.load_state_dict(theirs.state_dict())
        self.ffn.fc1.load_state_dict(ref.linear1.state_dict())  # raises on a size mismatch, naming the shapes
        self.ffn.fc2.load_state_dict(ref.linear2.state_dict())
        return self

    def _residual(self, x: torch.Tensor, norm: nn.LayerNorm, sublayer: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if self.norm_first:
            return x + self.dropout(sublayer(norm(x)))  # pre-norm: the stream itself is never normalised
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
        """``x (B, L, d_model)``, ``memory (B, S, d_model)`` for cross-attention → ``(B, L, d_model)``."""
        validate.ndim(x, 3, "x", "(batch, L, d_model)")
        if self.cross_attn is not None and memory is None:
            raise ValueError("this block has cross-attention: pass memory (batch, S, d_model)")
        if self.cross_attn is None and memory is not None:
            raise ValueError("memory was given but the block has no cross-attention (cross_attention=False)")

        def self_attention(h: torch.Tensor) -> torch.Tensor:
            return self.attn(h, attn_mask=attn_mask, key_padding_mask=key_padding_mask, is_causal=self.causal, cache=cache)

        x = self._residual(x, self.attn_norm, self_attention)
        if self.cross_attn is not None:
            x = self._residual(
                x, self.cross_attn_norm, lambda h: self.cross_attn(h, memory, key_padding_mask=memory_key_padding_mask)
            )
        return self._residual(x, self.ffn_norm, self.ffn)


class _Stack(nn.Module):
    def __init__(
        self,
        n_layers: int,
        d_model: int,
        n_heads: int,
        d_ff: int | None,
        dropout: float,
        norm_first: bool,
        causal: bool,
        cross_attention: bool,
        activation: str,
        layer_norm_eps: float,
        bias: bool,
        final_norm: bool | None,
        rope: nn.Module | None,
        use_builtin: bool,
    ) -> None:
        super().__init__()
        validate.positive_int(n_layers, "n_layers")
        self.layers = nn.ModuleList(
            TransformerBlock(
                d_model, n_heads, d_ff, dropout, None, norm_first, causal, activation, layer_norm_eps, bias,
                cross_attention, rope, use_builtin,
            )
            for _ in range(n_layers)
        )
        final_norm = norm_first if final_norm is None else final_norm
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias) if final_norm else nn.Identity()


class Encoder(_Stack):
    """``n_layers`` bidirectional blocks (BERT-style with the defaults): ``(B, L, d) → (B, L, d)``.

    ``final_norm`` defaults to ``norm_first`` (a pre-norm stack needs a last LayerNorm).
    """

    def __init__(
        self,
        n_layers: int,
        d_model: int,
        n_heads: int,
        d_ff: int | None = None,
        dropout: float = 0.0,
        norm_first: bool = False,
        activation: str = "gelu",
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
        final_norm: bool | None = None,
        rope: nn.Module | None = None,
        use_builtin: bool = False,
    ) -> None:
        super().__init__(
            n_layers, d_model, n_heads, d_ff, dropout, norm_first, False, False, activation, layer_norm_eps, bias,
            final_norm, rope, use_builtin,
        )

    def forward(
        self, x: torch.Tensor, *, key_padding_mask: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, key_padding_mask=key_padding_mask, attn_mask=attn_mask)
        return self.norm(x)


class Decoder(_Stack):
    """``n_layers`` causal blocks, with cross-attention to ``memory`` unless ``cross_attention=False``.

    ``Decoder(cross_attention=False, norm_first=True)`` is the GPT-2 stack (final LayerNorm
    included). ``caches`` (one :class:`~zen.attention.KVCache` per layer) enable incremental
    decoding.
    """

    def __init__(
        self,
        n_layers: int,
        d_model: int,
        n_heads: int,
        d_ff: int | None = None,
        dropout: float = 0.0,
        norm_first: bool = False,
        activation: str = "gelu",
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
        final_norm: bool | None = None,
        cross_attention: bool = True,
        rope: nn.Module | None = None,
        use_builtin: bool = False,
    ) -> None:
        super().__init__(
            n_layers, d_model, n_heads, d_ff, dropout, norm_first, True, cross_attention, activation, layer_norm_eps,
            bias, final_norm, rope, use_builtin,
        )

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        *,
        key_padding_mask: torch.Tensor | None = None,
        memory_key_padding_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        caches: list[KVCache] | None = None,
    ) -> torch.Tensor:
        if caches is not None and len(caches) != len(self.layers):
            raise ValueError(f"caches must hold one KVCache per layer ({len(self.layers)}), got {len(caches)}")
        for i, layer in enumerate(self.layers):
            x = layer(
                x, memory, key_padding_mask=key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                attn_mask=attn_mask, cache=None if caches is None else caches[i],
            )
        return self.norm(x)


# ---------------------------------------------------------------------------------- positions
def sinusoidal_positions(n_positions: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The paper's encoding ``(n_positions, d_model)``: ``PE[p, 2i] = sin(p / base^(2i/d))``, ``PE[p, 2i+1] = cos(...)``."""
    validate.positive_int(n_positions, "n_positions")
    validate.positive_int(d_model, "d_model")
    if d_model % 2:
        raise ValueError(f"d_model must be even for sinusoidal positions, got {d_model}")
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (n, 1)
    inv_freq = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (d/2,)
    angles = pos * inv_freq  # (n, d/2)
    pe = torch.empty(n_positions, d_model, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = angles.sin(), angles.cos()
    return pe.float()


def _check_positions(x: torch.Tensor, offset: int, max_len: int, d_model: int) -> None:
    validate.ndim(x, 3, "x", "(batch, L, d_model)")
    if x.shape[-1] != d_model:
        raise ValueError(f"x must have d_model={d_model} features, got shape {tuple(x.shape)}")
    if offset + x.shape[1] > max_len:
        raise ValueError(f"positions up to {offset + x.shape[1]} requested but max_len is {max_len}")


class SinusoidalPositionalEncoding(nn.Module):
    """Adds fixed sinusoidal positions: ``x (B, L, d_model) → x + PE[offset : offset + L]``."""

    def __init__(self, d_model: int, max_len: int = 4096, base: float = 10000.0) -> None:
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.register_buffer("pe", sinusoidal_positions(max_len, d_model, base), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        _check_positions(x, offset, self.max_len, self.d_model)
        return x + self.pe[offset : offset + x.shape[1]].to(x.dtype)


class LearnedPositionalEmbedding(nn.Module):
    """Adds a learned vector per position: ``x + weight[offset : offset + L]``; ``weight (max_len, d_model)``."""

    def __init__(self, max_len: int, d_model: int, init_std: float = 0.02) -> None:
        super().__init__()
        validate.positive_int(max_len, "max_len")
        validate.positive_int(d_model, "d_model")
        self.d_model, self.max_len = d_model, max_len
        self.weight = nn.Parameter(torch.randn(max_len, d_model) * init_std)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        _check_positions(x, offset, self.max_len, self.d_model)
        return x + self.weight[offset : offset + x.shape[1]]


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE) for queries/keys ``(..., L, d_head)``.

    Feature pairs ``(x_i, x_{i + d/2})`` are rotated by the angle ``p · base^(-2i/d)`` at
    position ``p`` (the "rotate-half" layout of GPT-NeoX and Llama). Then ``⟨R_p q, R_s k⟩``
    depends only on ``p − s``: attention sees relative positions. No parameters.
    """

    def __init__(self, d_head: int, base: float = 10000.0) -> None:
        super().__init__()
        validate.positive_int(d_head, "d_head")
        if d_head % 2:
            raise ValueError(f"d_head must be even for RoPE, got {d_head}")
        self.d_head, self.base = d_head, base
        inv_freq = base ** (-torch.arange(0, d_head, 2, dtype=torch.float32) / d_head)  # (d/2,)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        if x.ndim < 2 or x.shape[-1] != self.d_head:
            raise ValueError(f"x must be (..., L, d_head={self.d_head}), got shape {tuple(x.shape)}")
        L = x.shape[-2]
        pos = torch.arange(offset, offset + L, device=x.device, dtype=torch.float32)
        angles = torch.outer(pos, self.inv_freq.to(x.device))  # (L, d/2)
        cos, sin = angles.cos().repeat(1, 2).to(x.dtype), angles.sin().repeat(1, 2).to(x.dtype)  # (L, d)
        x1, x2 = x.chunk(2, dim=-1)
        rotated = torch.cat([-x2, x1], dim=-1)  # rotate_half
        return x * cos + rotated * sin


# ------------------------------------------------------------------------------ encoder-decoder
class EncoderDecoder(nn.Module):
    """The original Transformer for sequence-to-sequence tasks (Vaswani et al., 2017).

    ``src (B, S)`` and ``tgt_in (B, T)`` token ids → logits ``(B, T, tgt_vocab)``. Embeddings
    are multiplied by ``√d_model`` and added to positions (``positional="sinusoidal"`` or
    ``"learned"``); the output layer shares the target embedding when ``tie_output``; source
    and target share one embedding when ``share_embeddings`` (needs one vocabulary).
    """

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        d_model: int = 512,
        n_heads: int = 8,
        n_layers: int = 6,
        n_dec_layers: int | None = None,
        d_ff: int = 2048,
        dropout: float = 0.1,
        max_len: int = 512,
        norm_first: bool = False,
        activation: str = "relu",
        positional: str = "sinusoidal",
        share_embeddings: bool = False,
        tie_output: bool = True,
        use_builtin: bool = False,
    ) -> None:
        super().__init__()
        validate.positive_int(src_vocab, "src_vocab")
        validate.positive_int(tgt_vocab, "tgt_vocab")
        if share_embeddings and src_vocab != tgt_vocab:
            raise ValueError(f"share_embeddings needs src_vocab == tgt_vocab, got {src_vocab} and {tgt_vocab}")
        if positional not in ("sinusoidal", "learned"):
            raise ValueError(f"positional must be 'sinusoidal' or 'learned', got {positional!r}")
        self.d_model = d_model
        self.src_embed = nn.Embedding(src_vocab, d_model)
        self.tgt_embed = self.src_embed if share_embeddings else nn.Embedding(tgt_vocab, d_model)
        for emb in {self.src_embed, self.tgt_embed}:
            nn.init.normal_(emb.weight, std=d_model**-0.5)  # so that √d_model · embedding has unit scale
        self.pos = (
            SinusoidalPositionalEncoding(d_model, max_len)
            if positional == "sinusoidal"
            else LearnedPositionalEmbedding(max_len, d_model)
        )
        self.dropout = nn.Dropout(dropout)
        kw = dict(d_ff=d_ff, dropout=dropout, norm_first=norm_first, activation=activation, use_builtin=use_builtin)
        self.encoder = Encoder(n_layers, d_model, n_heads, **kw)
        self.decoder = Decoder(n_dec_layers or n_layers, d_model, n_heads, **kw)
        self.lm_head = nn.Linear(d_model, tgt_vocab, bias=False)
        if tie_output:
            self.lm_head.weight = self.tgt_embed.weight

    def _embed(self, emb: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        validate.ndim(ids, 2, "token ids", "(batch, length)")
        return self.dropout(self.pos(emb(ids) * math.sqrt(self.d_model)))  # (B, L) -> (B, L, d_model)

    def encode(self, src: torch.Tensor, src_key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``src (B, S)`` → memory ``(B, S, d_model)``."""
        return self.encoder(self._embed(self.src_embed, src), key_padding_mask=src_key_padding_mask)

    def decode(
        self,
        tgt_in: torch.Tensor,
        memory: torch.Tensor,
        src_key_padding_mask: torch.Tensor | None = None,
        tgt_key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``tgt_in (B, T)`` and ``memory (B, S, d_model)`` → logits ``(B, T, tgt_vocab)``."""
        h = self.decoder(
            self._embed(self.tgt_embed, tgt_in), memory,
            key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=src_key_padding_mask,
        )
        return self.lm_head(h)

    def forward(
        self,
        src: torch.Tensor,
        tgt_in: torch.Tensor,
        src_key_padding_mask: torch.Tensor | None = None,
        tgt_key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        memory = self.encode(src, src_key_padding_mask)
        return self.decode(tgt_in, memory, src_key_padding_mask, tgt_key_padding_mask)

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, bos_id: int, max_new_tokens: int) -> torch.Tensor:
        """Generate ``(B, max_new_tokens)`` target ids one at a time, always taking the most likely token."""
        validate.positive_int(max_new_tokens, "max_new_tokens")
        memory = self.encode(src)
        out = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
        for _ in range(max_new_tokens):
            next_id = self.decode(out, memory)[:, -1].argmax(-1, keepdim=True)  # (B, 1)
            out = torch.cat([out, next_id], dim=1)
        return out[:, 1:]
