"""Stacks of blocks: :class:`Encoder`, :class:`Decoder` and the seq2seq :class:`EncoderDecoder`."""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn

from zen import validate
from zen.attention import KVCache
from zen.positions import LearnedPositionalEmbedding, SinusoidalPositionalEncoding
from zen.transformer.block import BlockConfig, TransformerBlock


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
