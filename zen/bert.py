"""BERT: a bidirectional Transformer encoder pre-trained by masked language modelling.

BERT {cite}`devlin2019bert` reads a whole sentence (or a pair of sentences) at once and learns by
filling in blanks. This module is the reference code of the chapter, built on
:class:`zen.transformer.Encoder` (post-norm blocks, exact GELU, LayerNorm ε = 1e-12)::

    input_ids (B, L) ─┬─ word embedding      (V, d)   ┐
    token_type_ids ───┼─ segment embedding   (2, d)   ├─ sum → LayerNorm → dropout → (B, L, d)
    positions 0..L-1 ─┴─ position embedding  (P, d)   ┘
        → Encoder (n post-norm blocks)          → last_hidden_state (B, L, d)
        → tanh(W · h[:, 0] + b)   ([CLS] token) → pooler_output (B, d)

Pre-training corrupts 15 % of the ordinary tokens (:mod:`zen.masking`, whose names this module
re-exports) and predicts the originals with ``decoder(LN(GELU(dense(h)))) + b``, whose decoder
*is* the word-embedding matrix (tied). Fine-tuning puts a linear layer on the pooled ``[CLS]``
vector. Padding is marked by ``attention_mask`` (1 = real token, 0 = padding, Hugging Face's
convention). :meth:`BertModel.from_hf` copies the weights of any Hugging Face
``transformers.BertModel`` (one map: :func:`load_hf_bert_layer`); outputs agree to float rounding.

Loading the real ``bert-base-uncased`` (needs the network once; not run in CI)::

    from transformers import BertModel as HFBert, BertTokenizer
    hf = HFBert.from_pretrained("bert-base-uncased").eval()
    tok = BertTokenizer.from_pretrained("bert-base-uncased")
    model = zen.bert.BertModel.from_hf(hf).eval()
    texts = ["a first sentence", "a second, longer sentence"]
    batch = tok(texts, padding=True, return_tensors="pt")
    hidden, pooled = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    # hidden agrees with hf(**batch).last_hidden_state to about 1e-5
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from zen import activations, validate
from zen.masking import IGNORE_INDEX, SPECIAL_TOKENS, encode_batch, mask_tokens
from zen.positions import LearnedPositionalEmbedding
from zen.transformer import BlockConfig, Encoder, TransformerBlock

__all__ = [
    "SPECIAL_TOKENS",
    "IGNORE_INDEX",
    "mask_tokens",
    "encode_batch",
    "BertConfig",
    "BertOutput",
    "BertEmbeddings",
    "BertModel",
    "BertForMaskedLM",
    "BertForSequenceClassification",
    "load_hf_bert_layer",
]


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


# -------------------------------------------------------------------------------------- heads
class BertForMaskedLM(nn.Module):
    """BERT with the MLM head ``decoder(LayerNorm(GELU(dense(h)))) + bias``; the decoder *is* the
    word embedding.

    ``forward(input_ids, token_type_ids=None, attention_mask=None) → logits (B, L, V)``.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.transform = nn.Linear(config.d_model, config.d_model)
        self.act = activations.get(config.activation)
        self.transform_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.transform.apply(init_bert_weights)

    @property
    def decoder_weight(self) -> torch.Tensor:
        """The output projection ``(V, d)``: the word-embedding matrix itself (weight tying)."""
        return self.bert.embeddings.word.weight

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(..., d)`` → vocabulary logits ``(..., V)``."""
        h = self.transform_norm(self.act(self.transform(h)))
        return F.linear(h, self.decoder_weight, self.bias)  # (..., d) -> (..., V)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.head(self.bert(input_ids, token_type_ids, attention_mask).last_hidden_state)

    def loss(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean cross-entropy over the positions whose label is not ``IGNORE_INDEX``.

        Equal to ``F.cross_entropy(self(input_ids, ...).flatten(0, 1), labels.flatten())`` but
        runs the ``(d → V)`` head only at the ~15 % masked positions.
        """
        if labels.shape != input_ids.shape:
            raise ValueError(
                f"labels must have the shape of input_ids {tuple(input_ids.shape)}, got "
                f"{tuple(labels.shape)}"
            )
        picked = labels != IGNORE_INDEX  # (B, L) bool
        if not picked.any():
            raise ValueError("labels select no position (all are IGNORE_INDEX): nothing to predict")
        h = self.bert(input_ids, token_type_ids, attention_mask).last_hidden_state
        return F.cross_entropy(self.head(h[picked]), labels[picked])  # (n_masked, V) vs (n_masked,)

    @classmethod
    def from_hf(cls, hf_model) -> BertForMaskedLM:
        """A zen model with the weights of a ``transformers.BertForMaskedLM``."""
        model = cls(BertConfig.from_hf(hf_model.config))
        load_hf_encoder_weights(model.bert, hf_model.bert)
        p = hf_model.cls.predictions
        with torch.no_grad():
            model.transform.load_state_dict(p.transform.dense.state_dict())
            model.transform_norm.load_state_dict(p.transform.LayerNorm.state_dict())
            model.bias.copy_(p.decoder.bias if p.decoder.bias is not None else p.bias)
        return model.to(next(hf_model.parameters()).device)


class BertForSequenceClassification(nn.Module):
    """BERT for sentence classification: ``logits = W · dropout(pooler_output) + b``, ``(B,
    num_labels)``.

    Train with ``F.cross_entropy(logits, labels)`` on the raw logits.
    """

    def __init__(self, config: BertConfig, num_labels: int) -> None:
        super().__init__()
        validate.positive_int(num_labels, "num_labels")
        self.config, self.num_labels = config, num_labels
        self.bert = BertModel(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.d_model, num_labels)
        self.classifier.apply(init_bert_weights)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        pooled = self.bert(input_ids, token_type_ids, attention_mask).pooler_output  # (B, d)
        return self.classifier(self.dropout(pooled))  # (B, d) -> (B, num_labels)

    @classmethod
    def from_pretrained(
        cls, encoder: BertModel, num_labels: int, dropout: float | None = None
    ) -> BertForSequenceClassification:
        """A classifier whose encoder starts from a copy of ``encoder``'s weights (the head is new).

        ``dropout`` replaces the encoder's (e.g. pre-trained without dropout, fine-tuned with 0.1).
        """
        config = encoder.config if dropout is None else replace(encoder.config, dropout=dropout)
        model = cls(config, num_labels)
        model.bert.load_state_dict(encoder.state_dict())
        return model.to(next(encoder.parameters()).device)
