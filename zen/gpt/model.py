"""The GPT model: embeddings, a pre-norm causal :class:`zen.transformer.Decoder`, a tied head."""

from __future__ import annotations

import math

import torch
from torch import nn

from zen import sampling, validate
from zen.attention import KVCache
from zen.gpt.config import GPTConfig
from zen.positions import LearnedPositionalEmbedding
from zen.transformer import Decoder, TransformerBlock


class GPT(nn.Module):
    """A GPT-2-style causal language model: embeddings → :class:`zen.transformer.Decoder` → head.

    ``forward(idx)`` with ``idx`` ``(batch, seq)`` integer token ids returns logits
    ``(batch, seq, vocab_size)``: row ``t`` scores the token that follows ``idx[:, : t + 1]``.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = c = config
        self.wte = nn.Embedding(c.vocab_size, c.d_model)  # token embedding (V, d)
        self.wpe = LearnedPositionalEmbedding(c.max_len, c.d_model)  # position embedding (T, d)
        self.drop = nn.Dropout(c.dropout)
        self.decoder = Decoder(c.block(), c.n_layers, final_norm=True)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        if c.tie_weights:
            self.lm_head.weight = self.wte.weight  # one matrix embeds and un-embeds tokens
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorms, and the two
        projections that write into the residual stream (attention output, second FFN layer)
        scaled by ``1/√(2·n_layers)`` so the stream's variance does not grow with depth."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.wpe.weight, mean=0.0, std=0.02)
        for block in self.decoder.layers:
            for proj in (block.attn.out_proj, block.ffn.fc2):
                nn.init.normal_(
                    proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * self.config.n_layers)
                )

    def num_parameters(self, include_position: bool = True) -> int:
        """Parameters of this model (a tied matrix counts once)."""
        n = sum(p.numel() for p in self.parameters())
        return n if include_position else n - self.wpe.weight.numel()

    def new_cache(self) -> list[KVCache]:
        """An empty KV cache: one :class:`zen.attention.KVCache` per layer."""
        return [KVCache() for _ in range(self.config.n_layers)]

    def _check_idx(self, idx: torch.Tensor, past: int, values: bool | None = None) -> None:
        validate.token_ids(
            idx, self.config.vocab_size, "idx", values=values
        )  # values: on the CPU only, by default
        if idx.size(1) == 0:
            raise ValueError("idx must contain at least one token per sequence, got seq length 0")
        if past + idx.size(1) > self.config.max_len:
            raise ValueError(
                f"sequence length {past + idx.size(1)} (cache {past} + input {idx.size(1)}) "
                "exceeds "
                f"max_len {self.config.max_len}"
            )

    def forward(self, idx: torch.Tensor, cache: list[KVCache] | None = None) -> torch.Tensor:
        """Logits ``(batch, seq, vocab_size)`` for token ids ``idx`` ``(batch, seq)``.

        With a cache (:meth:`new_cache`), ``idx`` holds only the *new* tokens: they take
        positions ``past ..`` (``past`` = tokens already cached), attend to the cached keys and
        values too, and their own keys and values are appended.
        """
        past = 0 if cache is None else len(cache[0])
        self._check_idx(idx, past)
        x = self.drop(self.wpe(self.wte(idx), offset=past))  # (batch, seq) -> (batch, seq, d_model)
        x = self.decoder(x, caches=cache)  # (batch, seq, d_model), final LayerNorm included
        return self.lm_head(x)  # (batch, seq, d_model) -> (batch, seq, vocab_size)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Extend ``idx`` ``(batch, seq)`` by ``max_new_tokens`` sampled tokens → ``(batch, seq +
        new)``.

        ``temperature=0`` is greedy decoding; ``top_k``/``top_p`` restrict sampling to the most
        likely tokens (see :mod:`zen.sampling`). With ``use_cache`` each step feeds only the
        newest token and reuses the keys and values of the earlier ones; the result is the same
        as recomputing the whole prefix every step (``use_cache=False``), only faster. Once the
        sequence is longer than ``max_len`` the context is cropped to the last ``max_len``
        tokens, which shifts every position, so from then on both paths recompute.
        """
        validate.positive_int(max_new_tokens, "max_new_tokens")
        # The prompt's ids are read back once, here, on any device; the loop then feeds only ids
        # sampled from the model, which forward range-checks on the CPU only (no GPU sync per
        # token).
        self._check_idx(idx[:, -self.config.max_len :], 0, values=True)
        return sampling.generate(self, idx, max_new_tokens, self.config.max_len, temperature,
                                 top_k, top_p, use_cache, generator)  # fmt: skip

    @classmethod
    def from_hf(cls, hf_model) -> GPT:
        """A zen :class:`GPT` with the weights of a ``transformers.GPT2LMHeadModel`` (or
        ``GPT2Model``).

        The blocks map through :func:`load_hf_gpt2_block`; ``wte``, ``wpe`` and ``ln_f`` (→
        ``decoder.norm``) copy as they are. The model has the Hugging Face model's dtype, on the
        CPU.
        """
        body = getattr(hf_model, "transformer", hf_model)
        if not all(hasattr(body, name) for name in ("wte", "wpe", "h", "ln_f")):
            raise TypeError(
                f"expected a transformers GPT2LMHeadModel, got {type(hf_model).__name__}"
            )
        config = GPTConfig.from_hf(hf_model.config)
        model = cls(config).to(body.wte.weight.dtype)
        with torch.no_grad():
            model.wte.weight.copy_(body.wte.weight)
            model.wpe.weight.copy_(body.wpe.weight)
            model.decoder.norm.load_state_dict(body.ln_f.state_dict())
            for ours, theirs in zip(model.decoder.layers, body.h, strict=True):
                load_hf_gpt2_block(ours, theirs)
            if not config.tie_weights:
                model.lm_head.weight.copy_(hf_model.lm_head.weight)
        return model


@torch.no_grad()
def load_hf_gpt2_block(block: TransformerBlock, hf_block) -> TransformerBlock:
    """Copy one Hugging Face ``GPT2Block`` (``GPT2Model.h[i]``) into a pre-norm causal ``block``.

    GPT-2 stores its linear layers as ``Conv1D`` with weight ``(in, out)``, the transpose of
    ``nn.Linear``'s ``(out, in)``; its fused ``c_attn`` ``(d, 3d)`` splits into q, k, v::

        attn.c_attn (split, .T)  → attn.q/k/v_proj       ln_1 → attn_norm
        attn.c_proj (.T)         → attn.out_proj         ln_2 → ffn_norm
        mlp.c_fc (.T)            → ffn.fc1               mlp.c_proj (.T) → ffn.fc2
    """
    d, a, h = block.attn.d_model, block.attn, hf_block
    for lin, w, b in zip(
        (a.q_proj, a.k_proj, a.v_proj),
        h.attn.c_attn.weight.split(d, dim=1),
        h.attn.c_attn.bias.split(d),
    ):  # (d, 3d) -> 3 × (d, d)
        lin.weight.copy_(w.T)
        lin.bias.copy_(b)
    for lin, conv in (
        (a.out_proj, h.attn.c_proj),
        (block.ffn.fc1, h.mlp.c_fc),
        (block.ffn.fc2, h.mlp.c_proj),
    ):
        lin.weight.copy_(conv.weight.T)
        lin.bias.copy_(conv.bias)
    block.attn_norm.load_state_dict(h.ln_1.state_dict())
    block.ffn_norm.load_state_dict(h.ln_2.state_dict())
    return block
