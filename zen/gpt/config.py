"""GPT's sizes (:class:`GPTConfig`) and what they cost: parameters and FLOPs per token."""

from __future__ import annotations

from dataclasses import dataclass

from zen import activations, validate
from zen.counting import TransformerSize, param_count
from zen.transformer import BlockConfig


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
