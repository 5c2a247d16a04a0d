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

from zen.bert.heads import BertForMaskedLM, BertForSequenceClassification
from zen.bert.model import (
    BertConfig,
    BertEmbeddings,
    BertModel,
    BertOutput,
    init_bert_weights,
    load_hf_bert_layer,
    load_hf_encoder_weights,
)
from zen.masking import IGNORE_INDEX, SPECIAL_TOKENS, encode_batch, mask_tokens

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
    "load_hf_encoder_weights",
    "init_bert_weights",
]
