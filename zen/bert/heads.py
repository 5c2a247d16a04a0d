"""BERT's task heads: masked language modelling and sentence classification.

The math and the shape diagram are in :mod:`zen.bert`.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from zen import activations, validate
from zen.bert.model import BertConfig, BertModel, init_bert_weights, load_hf_encoder_weights
from zen.masking import IGNORE_INDEX


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
