"""GPT: a decoder-only Transformer language model, with a KV cache and GPT-2 weights.

A causal language model {cite}`radford2018gpt,radford2019gpt2`: ``logits[:, t]`` is the
model's distribution over token ``t + 1`` given tokens ``0..t``, trained with next-token
cross-entropy::

    idx (B, T) ─ wte (V, d) + wpe[0..T-1] (T, d) → dropout → (B, T, d)
      → n_layers pre-norm causal blocks (zen.transformer.Decoder) → final LayerNorm → (B, T, d)
      → lm_head (d → V, the token embedding itself when tied) → logits (B, T, V)

With a KV cache (one :class:`zen.attention.KVCache` per layer) each new token costs one position
of work instead of re-running the whole prefix. Training costs ``≈ 6 N`` FLOPs per token plus
attention's ``12 · n_layers · d_model · T`` (:func:`flops_per_token`, PaLM's accounting).

Loading the real GPT-2 (needs network, not run in CI)::

    from transformers import GPT2LMHeadModel, GPT2TokenizerFast
    hf = GPT2LMHeadModel.from_pretrained("gpt2")           # 124 M parameters, ~500 MB download
    model = GPT.from_hf(hf).eval()
    tok = GPT2TokenizerFast.from_pretrained("gpt2")
    idx = torch.tensor([tok.encode("The meaning of life is")])
    print(tok.decode(model.generate(idx, 20, temperature=0)[0]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zen import activations, sampling, validate
from zen.attention import KVCache
from zen.counting import TransformerSize, param_count
from zen.data import Split
from zen.positions import LearnedPositionalEmbedding
from zen.transformer import BlockConfig, Decoder, TransformerBlock


# --------------------------------------------------------------------------- configuration
@dataclass
class GPTConfig:
    """Sizes of a GPT. The defaults are a tiny model that trains on a CPU in seconds.

    Attributes:
        vocab_size: number of token ids.
        max_len: longest sequence (number of learned position embeddings).
        n_layers, n_heads, d_model: depth, heads per layer, width of the residual stream.
        d_ff: hidden width of the feed-forward network (``None``: ``4 * d_model``).
        dropout: dropout on embeddings, attention weights and residual branches.
        bias: whether linear layers and LayerNorms have biases (GPT-2: yes).
        layer_norm_eps: LayerNorm epsilon (GPT-2: 1e-5).
        activation: feed-forward non-linearity; ``"gelu_tanh"`` is GPT-2's ``gelu_new``.
        tie_weights: share the output head with the token embedding (GPT-2: yes).
        use_builtin: attention through PyTorch's fused ``F.scaled_dot_product_attention``
            (fast) instead of :mod:`zen.attention`'s readable path; both give the same result.
    """

    vocab_size: int = 512
    max_len: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_model: int = 64
    d_ff: int | None = None
    dropout: float = 0.0
    bias: bool = True
    layer_norm_eps: float = 1e-5
    activation: str = "gelu_tanh"
    tie_weights: bool = True
    use_builtin: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_len", "n_layers", "n_heads", "d_model"):
            validate.positive_int(getattr(self, name), name)
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        validate.positive_int(self.d_ff, "d_ff")
        validate.one_of(self.activation, sorted(activations.ACTIVATIONS), "activation")
        validate.divisible(self.d_model, self.n_heads, "d_model", "n_heads")
        validate.in_range(self.dropout, "dropout", 0.0, 1.0)

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def block(self) -> BlockConfig:
        """The decoder's blocks: pre-norm and causal, without cross-attention."""
        return BlockConfig(
            self.d_model,
            self.n_heads,
            self.d_ff,
            self.dropout,
            norm_first=True,
            causal=True,
            activation=self.activation,
            layer_norm_eps=self.layer_norm_eps,
            bias=self.bias,
            use_builtin=self.use_builtin,
        )

    def transformer_size(self) -> TransformerSize:
        """The sizes in :mod:`zen.counting`'s terms (decoder-only, final LayerNorm)."""
        return TransformerSize(
            d_model=self.d_model,
            n_heads=self.n_heads,
            d_ff=self.d_ff,
            n_layers=self.n_layers,
            vocab_size=self.vocab_size,
            max_len=self.max_len,
            tie_output=self.tie_weights,
            bias=self.bias,
            final_norm=True,
        )

    @classmethod
    def from_hf(cls, hf_config) -> GPTConfig:
        """The zen config of a ``transformers.GPT2Config`` (checks the options zen supports)."""
        activation = activations.from_hf(hf_config.activation_function, "activation_function")
        unsupported = {
            "scale_attn_weights": (getattr(hf_config, "scale_attn_weights", True), True),
            "scale_attn_by_inverse_layer_idx": (
                getattr(hf_config, "scale_attn_by_inverse_layer_idx", False),
                False,
            ),
            "reorder_and_upcast_attn": (
                getattr(hf_config, "reorder_and_upcast_attn", False),
                False,
            ),
            "add_cross_attention": (getattr(hf_config, "add_cross_attention", False), False),
        }
        for key, (got, want) in unsupported.items():
            if got != want:
                raise ValueError(
                    f"GPT2Config.{key}={got!r} is not supported (zen.gpt expects {want!r})"
                )
        return cls(
            vocab_size=hf_config.vocab_size,
            max_len=hf_config.n_positions,
            n_layers=hf_config.n_layer,
            n_heads=hf_config.n_head,
            d_model=hf_config.n_embd,
            d_ff=hf_config.n_inner or 4 * hf_config.n_embd,
            dropout=0.0,
            bias=True,
            layer_norm_eps=hf_config.layer_norm_epsilon,
            activation=activation,
            tie_weights=getattr(hf_config, "tie_word_embeddings", True),
        )


# --------------------------------------------------------------------------- accounting
def count_parameters(config: GPTConfig, include_position: bool = True) -> int:
    """Number of parameters of ``GPT(config)``, from the sizes alone (no model is built).

    Per layer: two LayerNorms, the query/key/value and output projections (``4·d²`` + biases)
    and the feed-forward network (``2·d·d_ff`` + biases); plus the token (``V·d``) and position
    (``T·d``) embeddings, the final LayerNorm and — unless tied — the head (``d·V``). The
    arithmetic is :func:`zen.counting.param_count`'s (the Transformer chapter).
    """
    parts = param_count(config.transformer_size())
    return parts["total"] - (0 if include_position else parts["positions"])


def flops_per_token(config: GPTConfig, seq_len: int | None = None) -> int:
    """Training FLOPs per token, ``6 N + 12 · L · H · Q · T`` {cite}`chowdhery2022palm`.

    ``N`` counts every parameter except the position embeddings (the tied token embedding is
    used once per token, as the output head). Each weight costs 2 FLOPs per token forward (a
    multiply and an add) and 4 backward (gradients with respect to inputs and to weights):
    ``6 N``. Attention adds ``QKᵀ`` and ``AV``: ``2·2·T·d`` FLOPs forward per layer and token
    (``d = H·Q``: heads × head width), times 3 for forward + backward: ``12·L·H·Q·T``.
    ``seq_len`` (``T``) defaults to ``max_len``. This is the count MFU is measured against.
    Kaplan et al. {cite}`kaplan2020scaling` charge attention half as much (``6·L·T·d``, as if
    only the causal triangle were computed) and fit their laws to non-embedding parameters.
    """
    T = config.max_len if seq_len is None else validate.positive_int(seq_len, "seq_len")
    n = count_parameters(config, include_position=False)
    return 6 * n + 12 * config.n_layers * config.n_heads * config.d_head * T


# --------------------------------------------------------------------------- the model
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


# --------------------------------------------------------------------------- training helpers
def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of logits ``(batch, seq, vocab)`` and ids ``(batch, seq)``."""
    validate.ndim(logits, 3, "logits", "(batch, seq, vocab)")
    validate.ndim(targets, 2, "targets", "(batch, seq)")
    return F.cross_entropy(
        logits.flatten(0, 1), targets.flatten()
    )  # (batch·seq, vocab) vs (batch·seq,)


def random_windows(
    ids: torch.Tensor, batch_size: int, seq_len: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of language-modelling examples from a 1-D stream of token ids.

    Returns ``x`` and ``y`` of shape ``(batch_size, seq_len)`` with ``y`` = ``x`` shifted left
    by one: every position is a training example for the token after it.
    """
    validate.ndim(ids, 1, "ids", "(n_tokens,)")
    validate.positive_int(batch_size, "batch_size")
    validate.positive_int(seq_len, "seq_len")
    if len(ids) <= seq_len:
        raise ValueError(f"ids has {len(ids)} tokens; need more than seq_len={seq_len}")
    start = torch.randint(len(ids) - seq_len, (batch_size,), generator=generator)
    windows = ids[start[:, None] + torch.arange(seq_len + 1)]  # (batch, seq_len + 1)
    return windows[:, :-1], windows[:, 1:]


def lm_windows(ids: torch.Tensor, seq_len: int, max_windows: int | None = None) -> Split:
    """Consecutive, non-overlapping windows of a token stream as a :class:`zen.data.Split`.

    ``x`` and ``y`` have shape ``(n_windows, seq_len)`` and ``y`` is ``x`` shifted by one
    token, so ``zen.train.evaluate_loss(model, split, lm_loss)`` is the validation loss.
    """
    validate.ndim(ids, 1, "ids", "(n_tokens,)")
    validate.positive_int(seq_len, "seq_len")
    n = (len(ids) - 1) // seq_len
    if max_windows is not None:
        n = min(n, validate.positive_int(max_windows, "max_windows"))
    if n < 1:
        raise ValueError(f"ids has {len(ids)} tokens; need at least seq_len + 1 = {seq_len + 1}")
    x = ids[: n * seq_len].view(n, seq_len)  # (n_tokens,) -> (windows, seq_len)
    y = ids[1 : n * seq_len + 1].view(n, seq_len)
    return Split(x, y)
