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

from zen.transformer.block import BlockConfig, TransformerBlock
from zen.transformer.layers import FeedForward, RMSNorm
from zen.transformer.stacks import Decoder, Encoder, EncoderDecoder

__all__ = [
    "BlockConfig",
    "RMSNorm",
    "FeedForward",
    "TransformerBlock",
    "Encoder",
    "Decoder",
    "EncoderDecoder",
]
