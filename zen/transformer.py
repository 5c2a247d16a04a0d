"""The Transformer block and the stacks built from it.

One configurable block (:class:`BlockConfig`) serves the whole book: the original
encoder–decoder (post-norm, ReLU; Vaswani et al., 2017), BERT (post-norm, GELU) and GPT-2
(pre-norm, GELU, causal, a final LayerNorm). Every sub-layer adds into the *residual stream*::

    post-norm (paper, BERT):       x ← LN(x + Dropout(Sublayer(x)))
    pre-norm  (GPT-2, most LLMs):  x ← x + Dropout(Sublayer(LN(x)))     (+ one LN after the stack)

    Sublayer = self-attention (causal in a decoder)   (B, L, d) → (B, L, d)
             | cross-attention to memory (B, S, d)    (B, L, d) → (B, L, d)   decoder of a seq2seq
             | FFN(x) = fc2(act(fc1(x)))              (B, L, d) → (B, L, d_ff) → (B, L, d)
             | gated FFN(x) = fc2(act(gate(x)) ⊙ fc1(x))     (SwiGLU with act = silu; Llama)

    LN = LayerNorm (x − mean) / std · γ + β,  or RMSNorm x / rms(x) · γ  (norm="rms"; Llama)

    x (B, L, d) → block₁ → … → block_n → [LN] → (B, L, d)        Encoder / Decoder

Positions live in :mod:`zen.positions`; weights of PyTorch's ``nn.TransformerEncoderLayer`` map
in through :meth:`TransformerBlock.load_torch_weights`, Hugging Face BERT's and GPT-2's through
:func:`zen.bert.load_hf_bert_layer` and :func:`zen.gpt.load_hf_gpt2_block`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from zen import activations, validate
from zen.attention import KVCache, MultiHeadAttention
from zen.positions import LearnedPositionalEmbedding, SinusoidalPositionalEncoding

__all__ = [
    "BlockConfig",
    "RMSNorm",
    "FeedForward",
    "TransformerBlock",
    "Encoder",
    "Decoder",
    "EncoderDecoder",
]


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


class RMSNorm(nn.Module):
    """Root-mean-square norm {cite}`zhang2019rmsnorm`: ``x / √(mean(x²) + eps) · weight``.

    LayerNorm without the mean subtraction and the bias. The statistic is computed in float32
    whatever the input dtype (a bf16 sum of squares loses digits), then cast back before the
    gain, as Llama does. Shapes: ``(..., d_model) → (..., d_model)``.
    """

    def __init__(self, d_model: int, eps: float = 1e-6) -> None:
        super().__init__()
        validate.positive_int(d_model, "d_model")
        validate.positive(eps, "eps")
        self.d_model, self.eps = d_model, eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def extra_repr(self) -> str:
        return f"{self.d_model}, eps={self.eps}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        validate.features(x, self.d_model, "x")
        h = x.float()  # (..., d) in float32
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)  # unit root-mean-square
        return self.weight * h.to(x.dtype)


class FeedForward(nn.Module):
    """Position-wise feed-forward network ``fc2(act(fc1(x)))``.

    With ``gated=True`` a third matrix ``gate`` multiplies in a gate, ``fc2(act(gate(x)) ⊙
    fc1(x))`` {cite}`shazeer2020glu` (SwiGLU for ``activation="silu"``; Hugging Face calls
    ``gate``, ``fc1``, ``fc2`` ``gate_proj``, ``up_proj``, ``down_proj``).
    Shapes: ``(..., d_model) → (..., d_ff) → (..., d_model)``.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        activation: str = "gelu",
        bias: bool = True,
        gated: bool = False,
    ) -> None:
        super().__init__()
        validate.positive_int(d_model, "d_model")
        validate.positive_int(d_ff, "d_ff")
        self.act = activations.get(activation)
        self.activation = activation
        self.fc1 = nn.Linear(d_model, d_ff, bias=bias)
        self.gate = nn.Linear(d_model, d_ff, bias=bias) if gated else None
        self.fc2 = nn.Linear(d_ff, d_model, bias=bias)

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}, gated={self.gate is not None}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate is None:
            return self.fc2(self.act(self.fc1(x)))  # (..., d) -> (..., d_ff) -> (..., d)
        return self.fc2(self.act(self.gate(x)) * self.fc1(x))  # (..., d) -> (..., d_ff) -> (..., d)


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


class _Stack(nn.Module):
    """``n_layers`` blocks in ``layers``, then ``norm``.

    ``norm`` is a final LayerNorm, by default only when pre-norm.
    """

    def __init__(
        self, config: BlockConfig, n_layers: int, final_norm: bool | None, rope: nn.Module | None
    ) -> None:
        super().__init__()
        validate.positive_int(n_layers, "n_layers")
        self.layers = nn.ModuleList(TransformerBlock(config, rope) for _ in range(n_layers))
        final_norm = config.norm_first if final_norm is None else final_norm
        self.norm = config.make_norm() if final_norm else nn.Identity()


class Encoder(_Stack):
    """``n_layers`` bidirectional blocks: ``(B, L, d) → (B, L, d)``.

    ``config`` must be neither causal nor have cross-attention; ``final_norm`` defaults to
    ``config.norm_first`` (a pre-norm stack needs a last LayerNorm).
    """

    def __init__(
        self,
        config: BlockConfig,
        n_layers: int,
        *,
        final_norm: bool | None = None,
        rope: nn.Module | None = None,
    ) -> None:
        if isinstance(config, BlockConfig) and (config.causal or config.cross_attention):
            raise ValueError(
                "an Encoder's blocks are bidirectional without cross-attention, "
                f"got causal={config.causal}, "
                f"cross_attention={config.cross_attention}: use a Decoder"
            )
        super().__init__(config, n_layers, final_norm, rope)

    def forward(
        self,
        x: torch.Tensor,
        *,
        key_padding_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, key_padding_mask=key_padding_mask, attn_mask=attn_mask)  # (B, L, d)
        return self.norm(x)


class Decoder(_Stack):
    """``n_layers`` causal blocks (``config.causal`` is set), with cross-attention to ``memory``
    when ``config.cross_attention``: ``(B, L, d), memory (B, S, d) → (B, L, d)``.

    ``Decoder(BlockConfig(d, h, norm_first=True), n)`` is the GPT-2 stack (final LayerNorm
    included). ``caches`` (one :class:`~zen.attention.KVCache` per layer) enable incremental
    decoding.
    """

    def __init__(
        self,
        config: BlockConfig,
        n_layers: int,
        *,
        final_norm: bool | None = None,
        rope: nn.Module | None = None,
    ) -> None:
        if isinstance(config, BlockConfig):
            config = replace(config, causal=True)
        super().__init__(config, n_layers, final_norm, rope)

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
            raise ValueError(
                f"caches must hold one KVCache per layer ({len(self.layers)}), got {len(caches)}"
            )
        for i, layer in enumerate(self.layers):
            x = layer(
                x,
                memory,
                key_padding_mask=key_padding_mask,
                memory_key_padding_mask=memory_key_padding_mask,
                attn_mask=attn_mask,
                cache=None if caches is None else caches[i],
            )  # (B, L, d)
        return self.norm(x)


# ------------------------------------------------------------------------------ encoder-decoder
class EncoderDecoder(nn.Module):
    """The original Transformer for sequence-to-sequence tasks (Vaswani et al., 2017).

    ``src (B, S)`` and ``tgt_in (B, T)`` token ids → logits ``(B, T, tgt_vocab_size)``. Embeddings
    are multiplied by ``√d_model`` and added to positions (``positional="sinusoidal"`` or
    ``"learned"``); the output layer shares the target embedding when ``tie_output``; source
    and target share one embedding when ``share_embeddings`` (needs one vocabulary).
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
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
        validate.positive_int(src_vocab_size, "src_vocab_size")
        validate.positive_int(tgt_vocab_size, "tgt_vocab_size")
        if share_embeddings and src_vocab_size != tgt_vocab_size:
            raise ValueError(
                "share_embeddings needs src_vocab_size == tgt_vocab_size, "
                f"got {src_vocab_size} and {tgt_vocab_size}"
            )
        validate.one_of(positional, ("sinusoidal", "learned"), "positional")
        self.d_model = d_model
        self.src_embed = nn.Embedding(src_vocab_size, d_model)
        self.tgt_embed = (
            self.src_embed if share_embeddings else nn.Embedding(tgt_vocab_size, d_model)
        )
        # source first, always (a set of the two, as before, ran in the order of memory addresses)
        for emb in dict.fromkeys((self.src_embed, self.tgt_embed)):
            nn.init.normal_(
                emb.weight, std=d_model**-0.5
            )  # so that √d_model · embedding has unit scale
        self.pos = (
            SinusoidalPositionalEncoding(d_model, max_len)
            if positional == "sinusoidal"
            else LearnedPositionalEmbedding(max_len, d_model)
        )
        self.dropout = nn.Dropout(dropout)
        block = BlockConfig(
            d_model,
            n_heads,
            d_ff,
            dropout,
            norm_first=norm_first,
            activation=activation,
            use_builtin=use_builtin,
        )
        self.encoder = Encoder(block, n_layers)
        self.decoder = Decoder(replace(block, cross_attention=True), n_dec_layers or n_layers)
        self.lm_head = nn.Linear(d_model, tgt_vocab_size, bias=False)
        if tie_output:
            self.lm_head.weight = self.tgt_embed.weight

    def _embed(self, emb: nn.Embedding, ids: torch.Tensor, name: str) -> torch.Tensor:
        validate.token_ids(ids, emb.num_embeddings, name)
        return self.dropout(
            self.pos(emb(ids) * math.sqrt(self.d_model))
        )  # (B, L) -> (B, L, d_model)

    def encode(
        self, src: torch.Tensor, src_key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``src (B, S)`` → memory ``(B, S, d_model)``."""
        return self.encoder(
            self._embed(self.src_embed, src, "src"), key_padding_mask=src_key_padding_mask
        )

    def decode(
        self,
        tgt_in: torch.Tensor,
        memory: torch.Tensor,
        src_key_padding_mask: torch.Tensor | None = None,
        tgt_key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``tgt_in (B, T)`` and ``memory (B, S, d_model)`` → logits ``(B, T, tgt_vocab_size)``."""
        h = self.decoder(
            self._embed(self.tgt_embed, tgt_in, "tgt_in"),
            memory,
            key_padding_mask=tgt_key_padding_mask,
            memory_key_padding_mask=src_key_padding_mask,
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
        """Generate ``(B, max_new_tokens)`` target ids one at a time.

        Greedy: each step always takes the most likely token.
        """
        validate.positive_int(max_new_tokens, "max_new_tokens")
        memory = self.encode(src)
        out = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
        for _ in range(max_new_tokens):
            next_id = self.decode(out, memory)[:, -1].argmax(-1, keepdim=True)  # (B, 1)
            out = torch.cat([out, next_id], dim=1)
        return out[:, 1:]
