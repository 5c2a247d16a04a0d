"""Contrastive image–text learning (CLIP; Radford et al., 2021): two towers, one shared space.

A batch holds ``N`` matching pairs. Each tower encodes its input and projects it linearly into a
shared space of width ``d_embed``, where the embeddings are L2-normalised::

    images (N, ...) → image_encoder → (N, image_dim) → W_i → (N, d_embed) → /‖·‖ → u
    texts  (N, ...) → text_encoder  → (N, text_dim)  → W_t → (N, d_embed) → /‖·‖ → v

    logits = s · u vᵀ                                   (N, N), row i: image i against every text
    L = ½ [CE(logits, diag) + CE(logitsᵀ, diag)]        the symmetric InfoNCE loss

``s = exp(log_s) = 1/τ`` is a learned inverse temperature, stored as its log (so it stays
positive and its steps are relative) and clamped to at most 100, as CLIP does: a larger ``s``
sharpens the softmax over the batch. Each direction is InfoNCE (van den Oord et al., 2018): a
``N``-way classification of the true partner among the batch, so ``L`` ≥ 0 and a random model
scores ``log N``. The gradient with respect to the log scale is ``s`` times the mean, over both
directions and all rows, of ``E_p[c] − c_ii`` (``c`` the cosines, ``p`` the row's softmax).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zen import validate

__all__ = ["contrastive_logits", "contrastive_loss", "LogitScale", "CLIP", "recall_at_k"]


def _pair(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> None:
    """Check both embeddings are ``(N, d)`` floating tensors of the same shape."""
    for x, name in ((image_embeds, "image_embeds"), (text_embeds, "text_embeds")):
        validate.ndim(x, 2, name, "(batch, d_embed)")
        validate.floating(x, name)
    validate.same_size(image_embeds, text_embeds, 0, "image_embeds", "text_embeds")
    validate.same_size(image_embeds, text_embeds, 1, "image_embeds", "text_embeds")


def _scale(scale: torch.Tensor | float) -> torch.Tensor | float:
    """Check an inverse temperature is positive: a number, or a 0-D tensor (read on CPU only)."""
    if isinstance(scale, torch.Tensor):
        if scale.ndim != 0:
            raise ValueError(f"scale must be a number or a 0-D tensor, got shape {scale.shape}")
        if scale.device.type == "cpu" and not bool(scale > 0):
            raise ValueError(f"scale (1/temperature) must be positive, got {float(scale)!r}")
        return scale
    return validate.positive(scale, "scale (1/temperature)")


def contrastive_logits(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, scale: torch.Tensor | float
) -> torch.Tensor:
    """``scale · image_embeds @ text_embedsᵀ``: ``(N, d), (N, d) → (N, N)``, images × texts.

    The embeddings are used as given (:class:`CLIP` normalises them, so the logits are scaled
    cosines). ``scale`` is the inverse temperature ``1/τ > 0``.
    """
    _pair(image_embeds, text_embeds)
    scale = _scale(scale)
    return scale * image_embeds @ text_embeds.T  # (N, N)


def contrastive_loss(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, scale: torch.Tensor | float
) -> torch.Tensor:
    """The symmetric InfoNCE loss of ``N`` matching pairs (row ``i`` of each), a scalar.

    Args:
        image_embeds, text_embeds: ``(N, d)``, normalised by the caller for the CLIP loss.
        scale: the inverse temperature ``exp(log_s)``, a positive number or 0-D tensor.

    Returns ``½ (CE(logits, arange N) + CE(logitsᵀ, arange N))``, ``logits`` from
    :func:`contrastive_logits`: image→text and text→image classification of the partner.
    """
    logits = contrastive_logits(image_embeds, text_embeds, scale)  # (N images, N texts)
    target = torch.arange(len(logits), device=logits.device)  # (N,) the partner is on the diagonal
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class LogitScale(nn.Module):
    """A learned inverse temperature ``s = exp(min(log_s, log max_scale))``; a 0-D tensor.

    Stored as ``log_s`` (initialised to ``log(1/temperature)``, CLIP's ``1/0.07``); the clamp
    keeps ``s ≤ max_scale`` (100 in CLIP) so the softmax cannot become arbitrarily sharp.
    """

    def __init__(self, temperature: float = 0.07, max_scale: float = 100.0) -> None:
        super().__init__()
        validate.positive(temperature, "temperature")
        validate.positive(max_scale, "max_scale")
        if 1.0 / temperature > max_scale:
            raise ValueError(
                f"the initial scale 1/temperature = {1.0 / temperature:g} exceeds "
                f"max_scale = {max_scale:g}: raise the temperature or max_scale"
            )
        self.max_log = math.log(max_scale)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    def forward(self) -> torch.Tensor:
        return self.log_scale.clamp(max=self.max_log).exp()  # () the inverse temperature


class CLIP(nn.Module):
    """Two towers with linear projections into one normalised space, and a learned temperature.

    ``image_encoder`` maps an image batch to ``(N, image_dim)`` features and ``text_encoder`` a
    text batch (whatever it takes: token ids, or a tuple of ids and a mask, passed through) to
    ``(N, text_dim)``. ``forward`` returns ``(u, v, s)``: the normalised ``(N, d_embed)``
    embeddings and the inverse temperature; :meth:`loss` is :func:`contrastive_loss` on them.
    """

    def __init__(
        self,
        image_encoder: nn.Module,
        text_encoder: nn.Module,
        image_dim: int,
        text_dim: int,
        d_embed: int,
        *,
        temperature: float = 0.07,
        max_scale: float = 100.0,
    ) -> None:
        super().__init__()
        validate.positive_int(image_dim, "image_dim")
        validate.positive_int(text_dim, "text_dim")
        validate.positive_int(d_embed, "d_embed")
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        self.image_proj = nn.Linear(image_dim, d_embed, bias=False)  # CLIP's projections: no bias
        self.text_proj = nn.Linear(text_dim, d_embed, bias=False)
        self.logit_scale = LogitScale(temperature, max_scale)

    def _embed(self, features: torch.Tensor, proj: nn.Linear, name: str) -> torch.Tensor:
        validate.ndim(features, 2, f"the {name} encoder's output", "(batch, features)")
        validate.features(features, proj.in_features, f"the {name} encoder's output")
        return F.normalize(proj(features), dim=-1)  # (N, d_embed), unit rows

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Images → normalised ``(N, d_embed)`` embeddings."""
        return self._embed(self.image_encoder(images), self.image_proj, "image")

    def encode_text(self, texts: torch.Tensor | tuple) -> torch.Tensor:
        """Texts (a tensor, or a tuple of the text encoder's arguments) → ``(N, d_embed)``."""
        features = (
            self.text_encoder(*texts) if isinstance(texts, tuple) else self.text_encoder(texts)
        )
        return self._embed(features, self.text_proj, "text")

    def forward(
        self, images: torch.Tensor, texts: torch.Tensor | tuple
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        u, v = self.encode_image(images), self.encode_text(texts)  # (N, d_embed) each
        if len(u) != len(v):
            raise ValueError(f"got {len(u)} images but {len(v)} texts: CLIP needs matching pairs")
        return u, v, self.logit_scale()

    def loss(self, images: torch.Tensor, texts: torch.Tensor | tuple) -> torch.Tensor:
        """The symmetric contrastive loss of the batch's pairs."""
        return contrastive_loss(*self(images, texts))


def recall_at_k(
    similarity: torch.Tensor, k: int, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """Retrieval recall@k: the fraction of queries (rows) whose match is in their top ``k``.

    ``similarity`` is ``(Q, G)``, queries × gallery. Without ``labels`` query ``i``'s match is
    gallery item ``i`` (``Q == G``, matching pairs); with ``labels = (query_labels,
    gallery_labels)`` any gallery item of the query's label counts. Returns a 0-D tensor.
    """
    validate.ndim(similarity, 2, "similarity", "(queries, gallery)")
    validate.positive_int(k, "k")
    if k > similarity.shape[1]:
        raise ValueError(f"k must be at most the gallery size {similarity.shape[1]}, got {k}")
    top = similarity.topk(k, dim=1).indices  # (Q, k)
    if labels is None:
        if similarity.shape[0] != similarity.shape[1]:
            raise ValueError(
                f"without labels the match of query i is item i: similarity must be square, "
                f"got shape {tuple(similarity.shape)}"
            )
        hits = top == torch.arange(len(top), device=top.device)[:, None]  # (Q, k)
    else:
        query_labels, gallery_labels = labels
        if len(query_labels) != similarity.shape[0] or len(gallery_labels) != similarity.shape[1]:
            raise ValueError(
                f"labels must have {similarity.shape[0]} query and {similarity.shape[1]} "
                f"gallery entries, got {len(query_labels)} and {len(gallery_labels)}"
            )
        hits = gallery_labels[top] == query_labels[:, None]  # (Q, k)
    return hits.any(dim=1).float().mean()
