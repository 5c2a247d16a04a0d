"""GPT: a decoder-only Transformer language model, with a KV cache and GPT-2 weight loading.

The model {cite}`radford2018gpt,radford2019gpt2` is token embeddings + learned position
embeddings → ``n_layer`` pre-norm, causal Transformer blocks (:mod:`zen.transformer`) → a final
LayerNorm → a linear head that shares its weight with the token embedding. Trained with
next-token cross-entropy it is a *causal language model*: ``logits[:, t]`` is the model's
distribution over token ``t + 1`` given tokens ``0..t``.

* :class:`GPTConfig` — the sizes; :meth:`GPTConfig.from_hf` reads a ``transformers.GPT2Config``.
* :class:`GPT` — ``forward(idx)`` → logits ``(batch, seq, vocab)``; :meth:`GPT.generate` with
  greedy / temperature / top-k / top-p decoding and a KV cache; :meth:`GPT.from_hf` copies the
  weights of any ``transformers.GPT2LMHeadModel``.
* The KV cache: :meth:`GPT.new_cache` gives one :class:`zen.attention.KVCache` per layer, which
  stores the keys and values of the tokens seen so far, so each new token costs one position
  of work instead of re-running the whole prefix.
* :func:`lm_loss`, :func:`random_windows`, :func:`lm_windows` — training and evaluating a causal LM
  (with :func:`zen.train.fit` and :func:`zen.train.evaluate_loss`).
* :func:`count_parameters`, :func:`flops_per_token` — the accounting behind ``C ≈ 6 N D``.

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

from zen import validate
from zen.counting import TransformerSize, param_count
from zen.data import Split
from zen.sampling import sample_next


# --------------------------------------------------------------------------- configuration
@dataclass
class GPTConfig:
    """Sizes of a GPT. The defaults are a tiny model that trains on a CPU in seconds.

    Attributes:
        vocab_size: number of token ids.
        block_size: longest sequence (number of learned position embeddings).
        n_layer, n_head, d_model: depth, heads per layer, width of the residual stream.
        d_ff: hidden width of the feed-forward network (``None``: ``4 * d_model``).
        dropout: dropout on embeddings, attention weights and residual branches.
        bias: whether linear layers and LayerNorms have biases (GPT-2: yes).
        layer_norm_eps: LayerNorm epsilon (GPT-2: 1e-5).
        activation: feed-forward non-linearity; ``"gelu_tanh"`` is GPT-2's ``gelu_new``.
        tie_weights: share the output head with the token embedding (GPT-2: yes).
        fused_attention: use PyTorch's fused ``F.scaled_dot_product_attention`` (fast) instead
            of :mod:`zen.attention`'s readable path; both give the same result.
    """

    vocab_size: int = 512
    block_size: int = 64
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 64
    d_ff: int | None = None
    dropout: float = 0.0
    bias: bool = True
    layer_norm_eps: float = 1e-5
    activation: str = "gelu_tanh"
    tie_weights: bool = True
    fused_attention: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model"):
            validate.positive_int(getattr(self, name), name)
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        validate.positive_int(self.d_ff, "d_ff")
        if self.activation not in ("gelu_tanh", "gelu", "relu", "silu"):
            raise ValueError(f"activation must be one of gelu_tanh, gelu, relu, silu; got {self.activation!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        validate.in_range(self.dropout, "dropout", 0.0, 1.0)

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head

    def transformer_size(self) -> TransformerSize:
        """The sizes in :mod:`zen.counting`'s terms (a decoder-only stack with a final LayerNorm)."""
        return TransformerSize(
            d_model=self.d_model, n_heads=self.n_head, d_ff=self.d_ff, n_layers=self.n_layer,
            vocab=self.vocab_size, max_len=self.block_size, tie_output=self.tie_weights, bias=self.bias,
            final_norm=True,
        )  # fmt: skip

    @classmethod
    def from_hf(cls, hf_config) -> GPTConfig:
        """The zen config of a ``transformers.GPT2Config`` (checks the options zen supports)."""
        act = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}
        if hf_config.activation_function not in act:
            raise ValueError(f"unsupported GPT-2 activation {hf_config.activation_function!r}; supported: {sorted(act)}")
        unsupported = {
            "scale_attn_weights": (getattr(hf_config, "scale_attn_weights", True), True),
            "scale_attn_by_inverse_layer_idx": (getattr(hf_config, "scale_attn_by_inverse_layer_idx", False), False),
            "reorder_and_upcast_attn": (getattr(hf_config, "reorder_and_upcast_attn", False), False),
            "add_cross_attention": (getattr(hf_config, "add_cross_attention", False), False),
        }
        for key, (got, want) in unsupported.items():
            if got != want:
                raise ValueError(f"GPT2Config.{key}={got!r} is not supported (zen.gpt expects {want!r})")
        return cls(
            vocab_size=hf_config.vocab_size,
            block_size=hf_config.n_positions,
            n_layer=hf_config.n_layer,
            n_head=hf_config.n_head,
            d_model=hf_config.n_embd,
            d_ff=hf_config.n_inner or 4 * hf_config.n_embd,
            dropout=0.0,
            bias=True,
            layer_norm_eps=hf_config.layer_norm_epsilon,
            activation=act[hf_config.activation_function],
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
    ``seq_len`` (``T``) defaults to ``block_size``. This is the count MFU is measured against.
    """
    T = config.block_size if seq_len is None else validate.positive_int(seq_len, "seq_len")
    n = count_parameters(config, include_position=False)
    return 6 * n + 12 * config.n_layer * config.n_head * config.d_head * T


# --------------------------------------------------------------------------- the model
class GPT(nn.Module):
    """A GPT-2-style causal language model: embeddings → :class:`zen.transformer.Decoder` → head.

    The decoder is ``n_layer`` pre-norm causal :class:`~zen.transformer.TransformerBlock`\\ s
    without cross-attention, followed by the final LayerNorm — exactly GPT-2's stack.
    ``forward(idx)`` with ``idx`` ``(batch, seq)`` integer token ids returns logits
    ``(batch, seq, vocab_size)``: row ``t`` scores the token that follows ``idx[:, : t + 1]``.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        from zen.transformer import Decoder, LearnedPositionalEmbedding

        self.config = c = config
        self.wte = nn.Embedding(c.vocab_size, c.d_model)  # token embedding (V, d)
        self.wpe = LearnedPositionalEmbedding(c.block_size, c.d_model)  # position embedding (T, d)
        self.drop = nn.Dropout(c.dropout)
        self.decoder = Decoder(
            c.n_layer, c.d_model, c.n_head, d_ff=c.d_ff, dropout=c.dropout, norm_first=True,
            activation=c.activation, layer_norm_eps=c.layer_norm_eps, bias=c.bias, final_norm=True,
            cross_attention=False, use_builtin=c.fused_attention,
        )  # fmt: skip
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        if c.tie_weights:
            self.lm_head.weight = self.wte.weight  # one matrix embeds and un-embeds tokens
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorms, and the two
        projections that write into the residual stream (attention output, second FFN layer)
        scaled by ``1/√(2·n_layer)`` so the stream's variance does not grow with depth."""
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
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * self.config.n_layer))

    def num_parameters(self, include_position: bool = True) -> int:
        """Parameters of this model (a tied matrix counts once)."""
        n = sum(p.numel() for p in self.parameters())
        return n if include_position else n - self.wpe.weight.numel()

    def new_cache(self) -> list:
        """An empty KV cache: one :class:`zen.attention.KVCache` per layer."""
        from zen.attention import KVCache

        return [KVCache() for _ in range(self.config.n_layer)]

    def _check_idx(self, idx: torch.Tensor, past: int) -> None:
        validate.ndim(idx, 2, "idx", "(batch, seq) token ids")
        if idx.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"idx must hold integer token ids (int64), got {idx.dtype}")
        if idx.size(1) == 0:
            raise ValueError("idx must contain at least one token per sequence, got seq length 0")
        if past + idx.size(1) > self.config.block_size:
            raise ValueError(
                f"sequence length {past + idx.size(1)} (cache {past} + input {idx.size(1)}) exceeds "
                f"block_size {self.config.block_size}"
            )
        if torch.compiler.is_compiling():
            return  # reading values back would break the compiled graph (and sync a GPU)
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= self.config.vocab_size:
            raise ValueError(f"token ids must be in [0, {self.config.vocab_size - 1}], got values in [{lo}, {hi}]")

    def forward(self, idx: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        """Logits ``(batch, seq, vocab_size)`` for token ids ``idx`` ``(batch, seq)``.

        With a cache (:meth:`new_cache`), ``idx`` holds only the *new* tokens: they take
        positions ``past ..`` (``past`` = tokens already cached), attend to the cached keys and
        values too, and their own keys and values are appended.
        """
        past = 0 if cache is None else len(cache[0])
        self._check_idx(idx, past)
        x = self.drop(self.wpe(self.wte(idx), offset=past))  # (batch, seq, d_model)
        x = self.decoder(x, caches=cache)  # (batch, seq, d_model), final LayerNorm included
        return self.lm_head(x)  # (batch, seq, vocab_size)

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
        """Extend ``idx`` ``(batch, seq)`` by ``max_new_tokens`` sampled tokens → ``(batch, seq + new)``.

        ``temperature=0`` is greedy decoding; ``top_k``/``top_p`` restrict sampling to the most
        likely tokens (see :mod:`zen.sampling`). With ``use_cache`` each step feeds only the
        newest token and reuses the keys and values of the earlier ones; the result is the same
        as recomputing the whole prefix every step (``use_cache=False``), only faster. Once the
        sequence is longer than ``block_size`` the context is cropped to the last ``block_size``
        tokens, which shifts every position, so from then on both paths recompute.
        """
        validate.positive_int(max_new_tokens, "max_new_tokens")
        self._check_idx(idx[:, -self.config.block_size :], 0)
        was_training = self.training
        self.eval()
        cache = self.new_cache() if use_cache else None
        for _ in range(max_new_tokens):
            if cache is not None and idx.size(1) <= self.config.block_size:
                logits = self(idx[:, len(cache[0]) :], cache=cache)[:, -1]  # feed only unseen tokens
            else:
                cache = None
                logits = self(idx[:, -self.config.block_size :])[:, -1]  # (batch, vocab)
            nxt = sample_next(logits, temperature, top_k, top_p, generator)  # (batch, 1)
            idx = torch.cat([idx, nxt.to(idx.dtype)], dim=1)
        self.train(was_training)
        return idx

    @classmethod
    def from_hf(cls, hf_model) -> GPT:
        """A zen :class:`GPT` with the weights of a ``transformers.GPT2LMHeadModel``.

        GPT-2 stores its linear layers as ``Conv1D`` with weight ``(in, out)``: they are
        transposed into ``nn.Linear``'s ``(out, in)``, and the fused ``c_attn`` ``(d, 3d)`` is
        split into the query, key and value projections.
        """
        sd = {k.removeprefix("transformer."): v for k, v in hf_model.state_dict().items()}
        if "wte.weight" not in sd or "h.0.attn.c_attn.weight" not in sd:
            raise TypeError(f"expected a transformers GPT2LMHeadModel, got {type(hf_model).__name__}")
        config = GPTConfig.from_hf(hf_model.config)
        d = config.d_model
        model = cls(config).to(sd["wte.weight"].dtype)
        own = {"wte.weight": sd["wte.weight"], "wpe.weight": sd["wpe.weight"],
               "decoder.norm.weight": sd["ln_f.weight"], "decoder.norm.bias": sd["ln_f.bias"]}  # fmt: skip
        for i in range(config.n_layer):
            h, z = f"h.{i}.", f"decoder.layers.{i}."
            w_q, w_k, w_v = sd[h + "attn.c_attn.weight"].split(d, dim=1)  # (d, 3d) -> 3 × (d, d)
            b_q, b_k, b_v = sd[h + "attn.c_attn.bias"].split(d)
            for name, w, b in (("q_proj", w_q, b_q), ("k_proj", w_k, b_k), ("v_proj", w_v, b_v)):
                own[z + f"attn.{name}.weight"], own[z + f"attn.{name}.bias"] = w.t(), b
            own[z + "attn.out_proj.weight"] = sd[h + "attn.c_proj.weight"].t()
            own[z + "attn.out_proj.bias"] = sd[h + "attn.c_proj.bias"]
            own[z + "ffn.fc1.weight"], own[z + "ffn.fc1.bias"] = sd[h + "mlp.c_fc.weight"].t(), sd[h + "mlp.c_fc.bias"]
            own[z + "ffn.fc2.weight"] = sd[h + "mlp.c_proj.weight"].t()
            own[z + "ffn.fc2.bias"] = sd[h + "mlp.c_proj.bias"]
            for ours, theirs in (("attn_norm", "ln_1"), ("ffn_norm", "ln_2")):
                own[z + f"{ours}.weight"], own[z + f"{ours}.bias"] = sd[h + f"{theirs}.weight"], sd[h + f"{theirs}.bias"]
        if not config.tie_weights:
            own["lm_head.weight"] = sd["lm_head.weight"]
        missing, unexpected = model.load_state_dict(own, strict=False)
        missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_weights)]
        if missing or unexpected:
            raise RuntimeError(f"weight mapping incomplete: missing {missing}, unexpected {unexpected}")
        return model


# --------------------------------------------------------------------------- training helpers
def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy: logits ``(batch, seq, vocab)``, targets ``(batch, seq)`` ids."""
    validate.ndim(logits, 3, "logits", "(batch, seq, vocab)")
    validate.ndim(targets, 2, "targets", "(batch, seq)")
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())  # (batch·seq, vocab) vs (batch·seq,)


def random_windows(
    ids: torch.Tensor, batch_size: int, block_size: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of language-modelling examples from a 1-D stream of token ids.

    Returns ``x`` and ``y`` of shape ``(batch_size, block_size)`` with ``y`` = ``x`` shifted left
    by one: every position is a training example for the token after it.
    """
    validate.ndim(ids, 1, "ids", "(n_tokens,)")
    validate.positive_int(batch_size, "batch_size")
    validate.positive_int(block_size, "block_size")
    if len(ids) <= block_size:
        raise ValueError(f"ids has {len(ids)} tokens; need more than block_size={block_size}")
    start = torch.randint(len(ids) - block_size, (batch_size,), generator=generator)
    windows = ids[start[:, None] + torch.arange(block_size + 1)]  # (batch, block_size + 1)
    return windows[:, :-1], windows[:, 1:]


def lm_windows(ids: torch.Tensor, block_size: int, max_windows: int | None = None) -> Split:
    """Consecutive, non-overlapping windows of a token stream as a :class:`zen.data.Split`.

    ``x`` and ``y`` have shape ``(n_windows, block_size)`` and ``y`` is ``x`` shifted by one
    token, so ``zen.train.evaluate_loss(model, split, lm_loss)`` is the validation loss.
    """
    validate.ndim(ids, 1, "ids", "(n_tokens,)")
    validate.positive_int(block_size, "block_size")
    n = (len(ids) - 1) // block_size
    if max_windows is not None:
        n = min(n, validate.positive_int(max_windows, "max_windows"))
    if n < 1:
        raise ValueError(f"ids has {len(ids)} tokens; need at least block_size + 1 = {block_size + 1}")
    x = ids[: n * block_size].view(n, block_size)  # (n_tokens,) -> (windows, block_size)
    y = ids[1 : n * block_size + 1].view(n, block_size)
    return Split(x, y)
