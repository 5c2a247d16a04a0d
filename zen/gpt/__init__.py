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

from zen.gpt.config import GPTConfig, count_parameters, flops_per_token
from zen.gpt.model import GPT, load_hf_gpt2_block
from zen.lm import lm_loss, lm_windows, random_windows

__all__ = [
    "GPTConfig",
    "count_parameters",
    "flops_per_token",
    "GPT",
    "load_hf_gpt2_block",
    "lm_loss",
    "lm_windows",
    "random_windows",
]
