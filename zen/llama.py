"""Llama: the modern decoder — GPT-2's stack with four parts changed.

The decoder of Llama {cite}`touvron2023llama`, and with q/k/v biases of Qwen2, differs from
GPT-2 ({mod}`zen.gpt`) in the block, not in the idea::

    idx (B, T) ─ embed (V, d) → (B, T, d)                         no position table
      → n_layers × [ x + Attn(RMSNorm(x)),  x + SwiGLU(RMSNorm(x)) ]
            Attn: q (B, h, T, d_head), k and v (B, h_kv, T, d_head)   grouped-query, h_kv | h
                  RoPE rotates q and k by their positions            (zen.positions)
            SwiGLU(x) = down(silu(gate(x)) ⊙ up(x)),  d_ff ≈ 8/3 · d  (zen.transformer)
      → RMSNorm → lm_head (d → V; the embedding itself when tied) → logits (B, T, V)

No linear layer has a bias (except q/k/v with ``qkv_bias``). The KV cache holds
``2 · n_layers · n_kv_heads · d_head · T`` numbers per sequence (:func:`kv_cache_bytes`):
grouped-query attention divides it by ``n_heads / n_kv_heads``.

Loading a real checkpoint (needs network; not run in CI). Llama 1–3 and Qwen2/2.5 load;
Llama 3.1 and later use a RoPE frequency scaling (``rope_type: llama3``) that
:meth:`Llama.from_hf` refuses with an error naming it::

    from transformers import AutoModelForCausalLM, AutoTokenizer
    hf = AutoModelForCausalLM.from_pretrained("Qwen/Qwen2.5-0.5B", torch_dtype=torch.float32)
    model = Llama.from_hf(hf).eval()
    tok = AutoTokenizer.from_pretrained("Qwen/Qwen2.5-0.5B")
    idx = torch.tensor([tok.encode("The meaning of life is")])
    print(tok.decode(model.generate(idx, 20, temperature=0)[0]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from zen import sampling, validate
from zen.attention import KVCache
from zen.positions import RotaryEmbedding
from zen.transformer import BlockConfig, Decoder, TransformerBlock

__all__ = ["LlamaConfig", "Llama", "swiglu_width", "kv_cache_bytes", "load_hf_llama_layer"]


def swiglu_width(d_model: int, multiple_of: int = 1) -> int:
    """The hidden width ``≈ 8/3 · d_model`` (rounded up to ``multiple_of``) of a SwiGLU FFN.

    A SwiGLU FFN has three ``d × d_ff`` matrices, a GELU MLP two ``d × 4d``: ``3 · d_ff = 8 d``
    keeps the parameters (and FLOPs) equal {cite}`shazeer2020glu`.
    """
    validate.positive_int(d_model, "d_model")
    validate.positive_int(multiple_of, "multiple_of")
    return multiple_of * math.ceil(8 * d_model / 3 / multiple_of)


def kv_cache_bytes(
    n_layers: int,
    n_kv_heads: int,
    d_head: int,
    seq_len: int,
    batch: int = 1,
    bytes_per_number: int = 2,
) -> int:
    """Bytes of a KV cache: ``2 · n_layers · n_kv_heads · d_head · seq_len · batch · bytes``.

    Keys and values (the 2), per layer, per key/value head, per position and sequence.
    """
    for name, v in (("n_layers", n_layers), ("n_kv_heads", n_kv_heads), ("d_head", d_head),
                    ("seq_len", seq_len), ("batch", batch),
                    ("bytes_per_number", bytes_per_number)):  # fmt: skip
        validate.positive_int(v, name)
    return 2 * n_layers * n_kv_heads * d_head * seq_len * batch * bytes_per_number


@dataclass
class LlamaConfig:
    """Sizes of a Llama-style decoder. The defaults are a tiny model that trains on a CPU.

    Attributes:
        vocab_size, max_len: token ids; the longest context (RoPE has no table to outgrow,
            but generation crops its context to ``max_len`` as GPT's does).
        n_layers, n_heads, d_model: depth, query heads, width of the residual stream.
        n_kv_heads: key/value heads (``None``: ``n_heads``, multi-head; 1: multi-query).
        d_ff: SwiGLU hidden width (``None``: :func:`swiglu_width` of ``d_model``).
        dropout: dropout on attention weights and residual branches (Llama: 0).
        rope_theta: RoPE base (Llama 2: 10 000; Llama 3: 500 000).
        norm_eps: RMSNorm epsilon.
        tie_embeddings: the output head is the token embedding (small Llamas, Qwen2 0.5B).
        qkv_bias: biases on the query/key/value projections (Qwen2: yes; Llama: no).
        use_builtin: attention through ``F.scaled_dot_product_attention``.
    """

    vocab_size: int = 512
    max_len: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int | None = None
    d_model: int = 64
    d_ff: int | None = None
    dropout: float = 0.0
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    qkv_bias: bool = False
    use_builtin: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_len", "n_layers", "n_heads", "d_model"):
            validate.positive_int(getattr(self, name), name)
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        validate.positive_int(self.n_kv_heads, "n_kv_heads")
        validate.divisible(self.n_heads, self.n_kv_heads, "n_heads", "n_kv_heads")
        validate.divisible(self.d_model, self.n_heads, "d_model", "n_heads")
        if self.d_head % 2:
            raise ValueError(f"RoPE needs an even d_head = d_model / n_heads, got {self.d_head}")
        if self.d_ff is None:
            self.d_ff = swiglu_width(self.d_model)
        validate.positive_int(self.d_ff, "d_ff")
        validate.in_range(self.dropout, "dropout", 0.0, 1.0)
        validate.positive(self.rope_theta, "rope_theta")
        validate.positive(self.norm_eps, "norm_eps")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def block(self) -> BlockConfig:
        """The decoder's blocks: pre-RMSNorm, causal, SwiGLU, grouped-query, no biases."""
        return BlockConfig(self.d_model, self.n_heads, self.d_ff, self.dropout, norm_first=True,
                           causal=True, activation="silu", layer_norm_eps=self.norm_eps,
                           bias=False, use_builtin=self.use_builtin, norm="rms", gated=True,
                           n_kv_heads=self.n_kv_heads, qkv_bias=self.qkv_bias)  # fmt: skip

    @classmethod
    def from_hf(cls, hf_config) -> LlamaConfig:
        """The zen config of a ``transformers`` ``LlamaConfig`` or ``Qwen2Config``.

        Raises ``ValueError`` naming the option for what zen does not implement: RoPE scaling,
        sliding windows, a ``head_dim`` other than ``hidden_size / num_attention_heads``,
        biases on the output or MLP projections, an activation other than SiLU.
        """
        model_type = getattr(hf_config, "model_type", None)
        if model_type not in ("llama", "qwen2"):
            raise TypeError(f"expected a LlamaConfig or Qwen2Config, got model_type {model_type!r}")
        rope = getattr(hf_config, "rope_parameters", None) or {
            "rope_type": "default" if getattr(hf_config, "rope_scaling", None) is None else "?",
            "rope_theta": getattr(hf_config, "rope_theta", 10000.0),
        }
        d, h = hf_config.hidden_size, hf_config.num_attention_heads
        checks = {
            "rope type": (rope.get("rope_type", "default"), "default"),
            "hidden_act": (hf_config.hidden_act, "silu"),
            "head_dim": (getattr(hf_config, "head_dim", None) or d // h, d // h),
            "mlp_bias": (getattr(hf_config, "mlp_bias", False), False),
            "use_sliding_window": (getattr(hf_config, "use_sliding_window", False), False),
        }
        if model_type == "llama":  # Llama's attention_bias puts biases on all four projections
            checks["attention_bias"] = (getattr(hf_config, "attention_bias", False), False)
        for key, (got, want) in checks.items():
            if got != want:
                raise ValueError(f"{key}={got!r} is not supported (zen.llama expects {want!r})")
        return cls(
            vocab_size=hf_config.vocab_size,
            max_len=hf_config.max_position_embeddings,
            n_layers=hf_config.num_hidden_layers,
            n_heads=h,
            n_kv_heads=getattr(hf_config, "num_key_value_heads", None) or h,
            d_model=d,
            d_ff=hf_config.intermediate_size,
            rope_theta=float(rope["rope_theta"]),
            norm_eps=hf_config.rms_norm_eps,
            tie_embeddings=bool(getattr(hf_config, "tie_word_embeddings", False)),
            qkv_bias=model_type == "qwen2",
        )


class Llama(nn.Module):
    """A Llama-style causal language model: ``idx (batch, seq)`` → logits ``(batch, seq, vocab)``.

    ``embed`` → :class:`zen.transformer.Decoder` (pre-RMSNorm SwiGLU blocks, RoPE shared by
    every layer, final RMSNorm) → ``lm_head``.
    """

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        if not isinstance(config, LlamaConfig):
            raise TypeError(f"config must be a LlamaConfig, got {type(config).__name__}")
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)  # (V, d)
        self.rope = RotaryEmbedding(c.d_head, base=c.rope_theta, max_len=c.max_len)
        self.drop = nn.Dropout(c.dropout)
        self.decoder = Decoder(c.block(), c.n_layers, final_norm=True, rope=self.rope)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        if c.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, 0.02) weights, zero biases, unit norm gains; the two projections writing into the
        residual stream (attention output, SwiGLU ``down``) at ``0.02/√(2·n_layers)``, as GPT-2."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.decoder.layers:
            for proj in (block.attn.out_proj, block.ffn.fc2):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * self.config.n_layers))
            for norm in (block.attn_norm, block.ffn_norm):
                nn.init.ones_(norm.weight)
        nn.init.ones_(self.decoder.norm.weight)

    def num_parameters(self) -> int:
        """Distinct parameters (a tied head counts once)."""
        return sum(p.numel() for p in self.parameters())

    def new_cache(self) -> list[KVCache]:
        """One empty :class:`zen.attention.KVCache` per layer, for :meth:`forward`'s ``cache``."""
        return [KVCache() for _ in range(self.config.n_layers)]

    def forward(self, idx: torch.Tensor, cache: list[KVCache] | None = None) -> torch.Tensor:
        """``idx (batch, seq)`` token ids → logits ``(batch, seq, vocab_size)``.

        With ``cache`` (from :meth:`new_cache`) ``idx`` holds only the tokens after the cached
        ones; RoPE rotates them at their true positions.
        """
        validate.token_ids(idx, self.config.vocab_size, "idx")  # values read back on CPU only
        x = self.drop(self.embed(idx))  # (batch, seq) -> (batch, seq, d_model)
        x = self.decoder(x, caches=cache)  # (batch, seq, d_model), final RMSNorm included
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
        """Extend ``idx`` ``(batch, seq)`` by ``max_new_tokens`` tokens → ``(batch, seq + new)``.

        ``temperature=0`` is greedy; ``top_k``/``top_p`` as in :mod:`zen.sampling`, whose
        :func:`~zen.sampling.generate` loop this is (cached and uncached give the same tokens).
        """
        validate.token_ids(idx, self.config.vocab_size, "idx", values=True)  # once, not per token
        return sampling.generate(self, idx, max_new_tokens, self.config.max_len, temperature,
                                 top_k, top_p, use_cache, generator)  # fmt: skip

    @classmethod
    def from_hf(cls, hf_model) -> Llama:
        """A zen :class:`Llama` with the weights of a ``transformers`` ``LlamaForCausalLM`` or
        ``Qwen2ForCausalLM``; the layers map through :func:`load_hf_llama_layer`. The model has
        the Hugging Face model's dtype, on the CPU."""
        body = getattr(hf_model, "model", None)
        if body is None or not all(hasattr(body, n) for n in ("embed_tokens", "layers", "norm")):
            raise TypeError(
                "expected a transformers LlamaForCausalLM or Qwen2ForCausalLM, "
                f"got {type(hf_model).__name__}"
            )
        config = LlamaConfig.from_hf(hf_model.config)
        model = cls(config).to(body.embed_tokens.weight.dtype)
        with torch.no_grad():
            model.embed.weight.copy_(body.embed_tokens.weight)
            model.decoder.norm.weight.copy_(body.norm.weight)
            for ours, theirs in zip(model.decoder.layers, body.layers, strict=True):
                load_hf_llama_layer(ours, theirs)
            if not config.tie_embeddings:
                model.lm_head.weight.copy_(hf_model.lm_head.weight)
        return model


@torch.no_grad()
def load_hf_llama_layer(block: TransformerBlock, hf_layer) -> TransformerBlock:
    """Copy one Hugging Face ``LlamaDecoderLayer`` / ``Qwen2DecoderLayer`` into ``block``.

    Both store ``nn.Linear`` weights ``(out, in)`` like zen, and RoPE in the half-split layout,
    so the map is one-to-one::

        self_attn.q/k/v_proj → attn.q/k/v_proj      input_layernorm          → attn_norm
        self_attn.o_proj     → attn.out_proj        post_attention_layernorm → ffn_norm
        mlp.gate/up/down_proj → ffn.gate/fc1/fc2
    """
    a, h = block.attn, hf_layer.self_attn
    pairs = [(a.q_proj, h.q_proj), (a.k_proj, h.k_proj), (a.v_proj, h.v_proj),
             (a.out_proj, h.o_proj), (block.ffn.gate, hf_layer.mlp.gate_proj),
             (block.ffn.fc1, hf_layer.mlp.up_proj), (block.ffn.fc2, hf_layer.mlp.down_proj),
             (block.attn_norm, hf_layer.input_layernorm),
             (block.ffn_norm, hf_layer.post_attention_layernorm)]  # fmt: skip
    for ours, theirs in pairs:
        ours.load_state_dict(theirs.state_dict())  # raises on a shape or bias mismatch
    return block
