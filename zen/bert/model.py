"""The BERT encoder: :class:`BertConfig`, embeddings, :class:`BertModel` and its weight maps.

The math and the shape diagram are in :mod:`zen.bert`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from zen import activations, validate
from zen.positions import LearnedPositionalEmbedding
from zen.transformer import BlockConfig, Encoder, TransformerBlock


# -------------------------------------------------------------------------------------- model
@dataclass
class BertConfig:
    """Sizes of a BERT. The defaults are BERT-base (109.5 M parameters with a 30,522-id vocabulary).

    ``d_model``, ``n_heads``, ``n_layers``, ``d_ff``, ``max_len`` (learned positions) and
    ``vocab_size`` as everywhere in zen; ``type_vocab_size`` segments; one ``dropout`` for
    embeddings, attention weights and residual branches.
    """

    vocab_size: int = 30522
    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    d_ff: int = 3072
    max_len: int = 512
    type_vocab_size: int = 2
    dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    activation: str = "gelu"
    pad_token_id: int = 0
    use_builtin: bool = False  # attention through F.scaled_dot_product_attention (fused kernels)

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "d_model",
            "n_layers",
            "n_heads",
            "d_ff",
            "max_len",
            "type_vocab_size",
        ):
            validate.positive_int(getattr(self, name), name)
        validate.divisible(self.d_model, self.n_heads, "d_model", "n_heads")
        validate.in_range(self.dropout, "dropout", 0.0, 1.0)
        validate.one_of(self.activation, sorted(activations.ACTIVATIONS), "activation")

    def block(self) -> BlockConfig:
        """The encoder's blocks: post-norm, bidirectional."""
        return BlockConfig(
            self.d_model,
            self.n_heads,
            self.d_ff,
            self.dropout,
            activation=self.activation,
            layer_norm_eps=self.layer_norm_eps,
            use_builtin=self.use_builtin,
        )

    @classmethod
    def from_hf(cls, hf_config) -> BertConfig:
        """The equivalent config of a ``transformers.BertConfig`` (dropouts kept as
        hidden_dropout_prob)."""
        kind = getattr(hf_config, "position_embedding_type", None) or "absolute"
        if kind != "absolute":
            raise ValueError(f"only absolute position embeddings are supported, got {kind!r}")
        if getattr(hf_config, "is_decoder", False):
            raise ValueError("a BERT configured as a decoder (is_decoder=True) is not supported")
        return cls(
            vocab_size=hf_config.vocab_size,
            d_model=hf_config.hidden_size,
            n_layers=hf_config.num_hidden_layers,
            n_heads=hf_config.num_attention_heads,
            d_ff=hf_config.intermediate_size,
            max_len=hf_config.max_position_embeddings,
            type_vocab_size=hf_config.type_vocab_size,
            dropout=hf_config.hidden_dropout_prob,
            layer_norm_eps=hf_config.layer_norm_eps,
            activation=activations.from_hf(hf_config.hidden_act),
            pad_token_id=hf_config.pad_token_id if hf_config.pad_token_id is not None else 0,
        )


class BertOutput(NamedTuple):
    """:class:`BertModel` output: ``last_hidden_state (B, L, d)``, ``pooler_output (B, d)``."""

    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor


class BertEmbeddings(nn.Module):
    """``LayerNorm(word[ids] + position[0..L-1] + segment[token_type_ids])`` then dropout.

    ``(B, L) → (B, L, d)``.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.position = LearnedPositionalEmbedding(config.max_len, config.d_model)
        self.segment = nn.Embedding(config.type_vocab_size, config.d_model)
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        x = self.word(input_ids) + self.segment(token_type_ids)  # (B, L) -> (B, L, d)
        return self.dropout(self.norm(self.position(x)))  # + position[0..L-1]


def _check_inputs(
    config: BertConfig,
    input_ids: torch.Tensor,
    token_type_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate the three inputs; return ``token_type_ids`` (zeros by default) and a key-padding
    mask.

    Token ids are range-checked only on the CPU (no GPU synchronisation; see
    :func:`zen.validate.token_ids`).
    """
    validate.token_ids(input_ids, config.vocab_size, "input_ids")
    if input_ids.shape[1] > config.max_len:
        raise ValueError(f"sequence length {input_ids.shape[1]} exceeds max_len={config.max_len}")
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(input_ids)
    validate.same_shape(token_type_ids, input_ids, "token_type_ids", "input_ids")
    validate.token_ids(token_type_ids, config.type_vocab_size, "token_type_ids")
    if attention_mask is None:
        return token_type_ids, None
    validate.same_shape(
        attention_mask, input_ids, "attention_mask", "input_ids"
    )  # 1 = token, 0 = padding
    return (
        token_type_ids,
        attention_mask == 0,
    )  # (B, L) bool, True = padding (zen.attention's convention)


class BertModel(nn.Module):
    """The BERT encoder: embeddings, ``n_layers`` post-norm blocks, and the ``[CLS]`` pooler.

    ``forward(input_ids (B, L), token_type_ids (B, L) | None, attention_mask (B, L) | None)``
    → :class:`BertOutput` ``(last_hidden_state (B, L, d), pooler_output (B, d))``.
    ``attention_mask`` uses Hugging Face's convention: 1 (or True) = real token, 0 = padding.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = Encoder(config.block(), config.n_layers)
        self.pooler = nn.Linear(config.d_model, config.d_model)
        self.apply(init_bert_weights)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> BertOutput:
        token_type_ids, padding = _check_inputs(
            self.config, input_ids, token_type_ids, attention_mask
        )
        x = self.embeddings(input_ids, token_type_ids)  # (B, L) -> (B, L, d)
        h = self.encoder(x, key_padding_mask=padding)  # (B, L, d)
        pooled = torch.tanh(self.pooler(h[:, 0]))  # the [CLS] position: (B, d)
        return BertOutput(h, pooled)

    @torch.no_grad()
    def attention_maps(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attention weights of every layer and head: ``(n_layers, B, n_heads, L, L)`` (rows sum to
        1)."""
        token_type_ids, padding = _check_inputs(
            self.config, input_ids, token_type_ids, attention_mask
        )
        x = self.embeddings(input_ids, token_type_ids)
        maps = []
        for layer in self.encoder.layers:
            h = layer.attn_norm(x) if layer.norm_first else x  # what the attention sub-layer sees
            maps.append(
                layer.attn(h, key_padding_mask=padding, need_weights=True)[1]
            )  # (B, h, L, L)
            x = layer(x, key_padding_mask=padding)
        return torch.stack(maps)

    @classmethod
    def from_hf(cls, hf_model) -> BertModel:
        """A zen :class:`BertModel` with the weights of a Hugging Face ``transformers.BertModel``.

        Pass ``hf.bert`` for a ``BertForMaskedLM`` / ``BertForSequenceClassification``. A model
        built without a pooling layer keeps zen's freshly initialised pooler.
        """
        model = cls(BertConfig.from_hf(hf_model.config))
        load_hf_encoder_weights(model, hf_model)
        return model.to(next(hf_model.parameters()).device)

    def num_parameters(self) -> int:
        """Number of distinct parameters."""
        return sum(p.numel() for p in self.parameters())


@torch.no_grad()
def init_bert_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation: ``N(0, 0.02)`` weights, zero biases, LayerNorm ``(1, 0)``; the padding
    row is zero."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=std)
        if module.padding_idx is not None:
            module.weight[module.padding_idx].zero_()
    elif isinstance(module, LearnedPositionalEmbedding):
        nn.init.normal_(module.weight, std=std)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


@torch.no_grad()
def load_hf_bert_layer(block: TransformerBlock, hf_layer) -> TransformerBlock:
    """Copy one Hugging Face ``BertLayer`` (``BertModel.encoder.layer[i]``) into a post-norm
    ``block``.

    ==================================  ===================
    Hugging Face ``BertLayer``          zen ``TransformerBlock``
    ==================================  ===================
    ``attention.self.query/key/value``  ``attn.q/k/v_proj``
    ``attention.output.dense``          ``attn.out_proj``
    ``attention.output.LayerNorm``      ``attn_norm``
    ``intermediate.dense``              ``ffn.fc1``
    ``output.dense``                    ``ffn.fc2``
    ``output.LayerNorm``                ``ffn_norm``
    ==================================  ===================

    Both use ``nn.Linear``, so weights copy as they are; a size mismatch raises, naming the shapes.
    """
    a = hf_layer.attention
    pairs = (
        (block.attn.q_proj, a.self.query),
        (block.attn.k_proj, a.self.key),
        (block.attn.v_proj, a.self.value),
        (block.attn.out_proj, a.output.dense),
        (block.attn_norm, a.output.LayerNorm),
        (block.ffn.fc1, hf_layer.intermediate.dense),
        (block.ffn.fc2, hf_layer.output.dense),
        (block.ffn_norm, hf_layer.output.LayerNorm),
    )
    for dst, src in pairs:
        dst.load_state_dict(src.state_dict())
    return block


@torch.no_grad()
def load_hf_encoder_weights(model: BertModel, hf_model) -> None:
    """Copy a Hugging Face ``BertModel``'s weights into ``model`` (same sizes), layer by layer."""
    e, he = model.embeddings, hf_model.embeddings
    e.word.weight.copy_(he.word_embeddings.weight)
    e.position.weight.copy_(he.position_embeddings.weight)
    e.segment.weight.copy_(he.token_type_embeddings.weight)
    e.norm.load_state_dict(he.LayerNorm.state_dict())
    if len(model.encoder.layers) != len(hf_model.encoder.layer):
        raise ValueError(
            f"layer counts differ: {len(model.encoder.layers)} vs {len(hf_model.encoder.layer)}"
        )
    for ours, theirs in zip(model.encoder.layers, hf_model.encoder.layer):
        load_hf_bert_layer(ours, theirs)
    if getattr(hf_model, "pooler", None) is not None:
        model.pooler.load_state_dict(hf_model.pooler.dense.state_dict())
