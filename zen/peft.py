"""Parameter-efficient fine-tuning: LoRA (rsLoRA, DoRA, QLoRA), adapters, prompt and prefix tuning.

* :class:`LoRALinear` (Hu et al., 2021): a frozen ``W`` plus a trainable low-rank update,
  ``y = x Wᵀ + s · x Aᵀ Bᵀ`` with ``A (r, in)`` random and ``B (out, r)`` zero, so training
  starts from the pre-trained function; ``s = α/r``, or ``α/√r`` with ``rslora=True``
  (Kalajdzievski, 2023). :meth:`LoRALinear.merge` folds ``s B A`` into ``W`` (no inference
  cost); :meth:`LoRALinear.unmerge` takes it out again. The layout and names match ``peft``'s
  ``lora_A``/``lora_B``, so an adapter moves between the two by copying two matrices.
* :class:`DoRALinear` (Liu et al., 2024): the merged weight ``W0 + sBA`` split into direction
  and a trained magnitude per output row, ``W' = m ⊙ (W0 + sBA) / ‖W0 + sBA‖_row``; the norm is
  treated as a constant in the backward pass (the paper's §4.3, as ``peft`` does).
* :class:`QLoRALinear` (Dettmers et al., 2023): LoRA on a base weight stored in NF4
  (:mod:`zen.compress.nf4`), dequantized on the fly in forward and backward, never stored.
* :class:`Adapter` (Houlsby et al., 2019): ``h + up(act(down(h)))`` with ``up`` zero-initialised,
  inserted after a frozen layer.
* :class:`PromptTuned` (Lester et al., 2021): ``n_prompt`` trained vectors prepended to the
  token embeddings of a frozen decoder-only LM (``embed``/``decoder``/``lm_head``, as
  :class:`zen.llama.Llama`).
* :class:`PrefixTuned` (Li & Liang, 2021): ``n_prefix`` trained keys and values prepended in
  every attention layer of a frozen :class:`zen.llama.Llama` (through its KV cache), as
  ``peft``'s prefix tuning does through ``past_key_values``.
* :func:`add_lora`, :func:`trainable_parameters`.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import torch
import torch.nn.functional as F
from torch import nn

from zen import validate
from zen.compress.nf4 import NF4Tensor, nf4_dequantize, nf4_quantize
from zen.swap import swap_linears


def _check_rank(base: nn.Module, r: int) -> None:
    if not isinstance(base, nn.Linear):
        raise TypeError(f"base must be nn.Linear, got {type(base).__name__}")
    validate.positive_int(r, "r")
    if r > min(base.in_features, base.out_features):
        raise ValueError(
            f"r must be <= min(in, out) = {min(base.in_features, base.out_features)} "
            f"for a {base.out_features}x{base.in_features} layer, got {r}"
        )


class LoRALinear(nn.Module):
    """Wrap ``base`` (an ``nn.Linear``, frozen) with a rank-``r`` update scaled by ``alpha / r``.

    Input ``(..., in)``, output ``(..., out)``.
    Trainable: ``lora_A (r, in)`` and ``lora_B (out, r)``.
    """

    def __init__(self, base: nn.Linear, r: int = 4, alpha: float = 8.0, rslora: bool = False):
        super().__init__()
        _check_rank(base, r)
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}")
        self.base, self.r, self.alpha, self.rslora = base, r, float(alpha), bool(rslora)
        for p in base.parameters():
            p.requires_grad_(False)
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(
            torch.zeros(base.out_features, r, device=w.device, dtype=w.dtype)
        )
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear; B = 0 makes ΔW = 0
        self.merged = False

    @property
    def scaling(self) -> float:
        """``α/r``, or rsLoRA's ``α/√r``."""
        return self.alpha / (math.sqrt(self.r) if self.rslora else self.r)

    def delta_weight(self) -> torch.Tensor:
        """``s · B A`` of shape ``(out, in)``."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged:
            return y
        return y + self.scaling * F.linear(
            F.linear(x, self.lora_A), self.lora_B
        )  # (..., r) -> (..., out)

    @torch.no_grad()
    def merge(self) -> None:
        """``W ← W + (α/r) B A``; the forward pass is then a plain ``Linear``."""
        if self.merged:
            raise RuntimeError("LoRA weights are already merged")
        self.base.weight += self.delta_weight()
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """``W ← W − (α/r) B A`` (undo :meth:`merge`, e.g. to keep training or swap adapters)."""
        if not self.merged:
            raise RuntimeError("LoRA weights are not merged")
        self.base.weight -= self.delta_weight()
        self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, rslora={self.rslora}, merged={self.merged}"


class DoRALinear(LoRALinear):
    """Weight-decomposed LoRA: ``y = x W'ᵀ + b`` with ``W' = m ⊙ V / ‖V‖_row``,
    ``V = W0 + s B A`` (``(out, in)``), ``m (out,)`` trained and initialised to ``‖W0‖_row``.

    Trainable: ``lora_A``, ``lora_B``, ``magnitude``. Input ``(..., in)``, output ``(..., out)``.
    """

    def __init__(self, base: nn.Linear, r: int = 4, alpha: float = 8.0, rslora: bool = False):
        super().__init__(base, r, alpha, rslora)
        self.magnitude = nn.Parameter(base.weight.detach().norm(dim=1).clone())  # (out,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        v = self.base.weight + self.delta_weight()  # (out, in)
        scale = self.magnitude / v.norm(dim=1).detach()  # (out,): the norm as a constant (§4.3)
        return F.linear(x, scale[:, None] * v, self.base.bias)

    def delta_weight(self) -> torch.Tensor:
        return super().delta_weight() if not self.merged else self._merged_delta

    @torch.no_grad()
    def merge(self) -> None:
        """``W ← m ⊙ V / ‖V‖_row``; :meth:`unmerge` restores ``W0``."""
        if self.merged:
            raise RuntimeError("LoRA weights are already merged")
        v = self.base.weight + super().delta_weight()
        merged = self.magnitude[:, None] * v / v.norm(dim=1, keepdim=True)
        self._merged_delta = merged - self.base.weight
        self.base.weight.copy_(merged)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            raise RuntimeError("LoRA weights are not merged")
        self.base.weight -= self._merged_delta
        self.merged = False


class _NF4Matmul(torch.autograd.Function):
    """``x Wᵀ`` with ``W`` dequantized from NF4 in forward and again in backward (not saved)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: NF4Tensor) -> torch.Tensor:
        ctx.w = w
        return x @ nf4_dequantize(w).to(x.dtype).T

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad @ nf4_dequantize(ctx.w).to(grad.dtype), None


class QLoRALinear(nn.Module):
    """LoRA on an NF4-quantized frozen base: ``y = x Ŵᵀ + b + s · x Aᵀ Bᵀ``, ``Ŵ`` from NF4.

    The base weight is kept only as packed 4-bit codes plus one scale per ``block_size``
    values; the float matrix exists transiently inside forward and backward.
    """

    def __init__(
        self, base: nn.Linear, r: int = 4, alpha: float = 8.0, block_size: int = 64,
        rslora: bool = False,
    ):  # fmt: skip
        super().__init__()
        _check_rank(base, r)
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}")
        self.weight_nf4 = nf4_quantize(base.weight.detach(), block_size)
        self.bias = None if base.bias is None else base.bias.detach().clone()
        self.r, self.alpha, self.rslora = r, float(alpha), bool(rslora)
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(
            torch.zeros(base.out_features, r, device=w.device, dtype=w.dtype)
        )
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    scaling = LoRALinear.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _NF4Matmul.apply(x, self.weight_nf4)  # (..., out), the 4-bit base
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y + self.scaling * F.linear(F.linear(x, self.lora_A), self.lora_B)

    def base_bytes(self) -> int:
        """Bytes of the frozen base weight: packed codes plus scales."""
        return self.weight_nf4.nbytes()


class PromptTuned(nn.Module):
    """A frozen decoder-only LM with ``n_prompt`` trained input vectors prepended.

    ``idx (B, T)`` → logits ``(B, T, vocab)`` for the real tokens only. ``model`` must have
    ``embed``, ``decoder`` and ``lm_head`` (as :class:`zen.llama.Llama`) and ``max_len`` at least
    ``n_prompt + T``.
    """

    def __init__(self, model: nn.Module, n_prompt: int):
        super().__init__()
        for attr in ("embed", "decoder", "lm_head"):
            if not hasattr(model, attr):
                raise TypeError(
                    f"model must have .{attr} (a zen Llama), got {type(model).__name__}"
                )
        validate.positive_int(n_prompt, "n_prompt")
        for p in model.parameters():
            p.requires_grad_(False)
        self.model, self.n_prompt = model, n_prompt
        emb = model.embed.weight
        start = torch.randint(emb.shape[0], (n_prompt,), device=emb.device)  # real-token start
        self.prompt = nn.Parameter(emb.detach()[start].clone())  # (n_prompt, d)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.model.embed(idx)  # (B, T, d)
        p = self.prompt.expand(idx.shape[0], -1, -1)  # (B, P, d)
        h = self.model.decoder(torch.cat([p, x], dim=1))  # (B, P + T, d)
        return self.model.lm_head(h[:, self.n_prompt :])  # (B, T, vocab)


class PrefixTuned(nn.Module):
    """A frozen :class:`zen.llama.Llama` with ``n_prefix`` trained keys and values per layer.

    ``idx (B, T)`` → logits ``(B, T, vocab)``. Every layer's attention sees the trained
    ``prefix_k``, ``prefix_v`` ``(n_layers, n_kv_heads, n_prefix, d_head)`` before the real
    keys and values, as if they were cached earlier tokens: the real tokens are rotated at
    positions ``n_prefix …``, the prefix keys are used as stored. The prefix starts as the
    base model's own keys and values on ``init_tokens`` (default: random; Li & Liang's
    initialisation from real activations), so the model starts as the base model reading
    those tokens first. ``max_len`` must be at least ``n_prefix + T``.
    """

    def __init__(self, model: nn.Module, n_prefix: int, init_tokens: torch.Tensor | None = None):
        super().__init__()
        if not (hasattr(model, "new_cache") and hasattr(model, "config")):
            raise TypeError(
                f"model must be a zen Llama (with .new_cache), got {type(model).__name__}"
            )
        validate.positive_int(n_prefix, "n_prefix")
        for p in model.parameters():
            p.requires_grad_(False)
        self.model, self.n_prefix = model, n_prefix
        if init_tokens is None:
            init_tokens = torch.randint(model.config.vocab_size, (n_prefix,))
        if tuple(init_tokens.shape) != (n_prefix,):
            raise ValueError(f"init_tokens must be ({n_prefix},), got {tuple(init_tokens.shape)}")
        start = init_tokens.to(_device_of(model))[None]  # (1, P)
        caches = model.new_cache()
        with torch.no_grad():
            model(start, cache=caches)  # fills every layer's cache with the keys and values
        self.prefix_k = nn.Parameter(torch.cat([c.k for c in caches]).clone())  # (L, h_kv, P, d)
        self.prefix_v = nn.Parameter(torch.cat([c.v for c in caches]).clone())  # (L, h_kv, P, d)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B = idx.shape[0]
        caches = self.model.new_cache()
        for c, k, v in zip(caches, self.prefix_k, self.prefix_v):  # (h_kv, P, d) each
            c.k, c.v = k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1)  # (B, h_kv, P, d)
        return self.model(idx, cache=caches)  # (B, T, vocab)


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class Adapter(nn.Module):
    """Bottleneck adapter ``h + W_up · act(W_down · h)``, ``(…, d) → (…, d)``; identity at init."""

    def __init__(self, d: int, bottleneck: int):
        super().__init__()
        validate.positive_int(d, "d")
        validate.positive_int(bottleneck, "bottleneck")
        if bottleneck > d:
            raise ValueError(f"bottleneck must be <= d={d} (it is a bottleneck), got {bottleneck}")
        self.down, self.up = nn.Linear(d, bottleneck), nn.Linear(bottleneck, d)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(F.gelu(self.down(h)))


def add_lora(
    model: nn.Module,
    r: int = 4,
    alpha: float = 8.0,
    names: Collection[str] | None = None,
    *,
    rslora: bool = False,
    kind: str = "lora",
) -> nn.Module:
    """Freeze ``model`` and wrap its ``nn.Linear`` children (those named in ``names``, or all) in
    :class:`LoRALinear` (``kind="dora"``: :class:`DoRALinear`; ``"qlora"``: :class:`QLoRALinear`),
    in place. Only the adapters' parameters stay trainable."""
    kinds = {"lora": LoRALinear, "dora": DoRALinear, "qlora": QLoRALinear}
    if kind not in kinds:
        raise ValueError(f"kind must be one of {sorted(kinds)}, got {kind!r}")
    for p in model.parameters():
        p.requires_grad_(False)
    return swap_linears(model, lambda lin: kinds[kind](lin, r, alpha, rslora=rslora), names)


def lora_target_names(model: nn.Module, suffixes: Collection[str]) -> list[str]:
    """Qualified names of the ``nn.Linear`` layers whose last name part is in ``suffixes``
    (as ``peft``'s ``target_modules``), e.g. ``("q_proj", "v_proj")``."""
    found = [
        n for n, m in model.named_modules() if type(m) is nn.Linear and n.split(".")[-1] in suffixes
    ]
    if not found:
        raise ValueError(f"no nn.Linear named one of {sorted(suffixes)} in the model")
    return found


def trainable_parameters(model: nn.Module) -> int:
    """Number of parameters with ``requires_grad``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
