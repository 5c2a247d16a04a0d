"""zen.clip: the symmetric contrastive loss equals Hugging Face CLIP's; its gradients; bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zen import clip


def _unit(n: int, d: int, g: torch.Generator, device) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1).to(device)


@pytest.mark.parametrize("seed", [0, 1])
def test_loss_equals_hugging_face_clip(seed):
    transformers = pytest.importorskip("transformers")
    g = torch.Generator().manual_seed(seed)
    text = dict(
        vocab_size=40,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=10,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    )
    vision = dict(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=8,
        patch_size=4,
    )
    config = transformers.CLIPConfig(
        text_config=text, vision_config=vision, projection_dim=8, logit_scale_init_value=1.5 + seed
    )
    torch.manual_seed(seed)  # Hugging Face initialises from the global stream
    model = transformers.CLIPModel(config).eval()
    n = 5 + seed
    ids = torch.randint(3, 40, (n, 7), generator=g)
    ids[:, -1] = 1  # the end-of-text token CLIP pools at
    out = model(input_ids=ids, pixel_values=torch.randn(n, 3, 8, 8, generator=g), return_loss=True)
    ours = clip.contrastive_loss(out.image_embeds, out.text_embeds, model.logit_scale.exp())
    torch.testing.assert_close(ours, out.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        clip.contrastive_logits(out.image_embeds, out.text_embeds, model.logit_scale.exp()),
        out.logits_per_image,
    )


@pytest.mark.parametrize("n,d", [(1, 3), (4, 8), (9, 5)])
def test_loss_is_symmetric_cross_entropy(device, n, d):
    g = torch.Generator().manual_seed(n)
    u, v = _unit(n, d, g, device), _unit(n, d, g, device)
    logits = 7.0 * u @ v.T
    i = torch.arange(n, device=device)
    expected = -(logits.log_softmax(1)[i, i].mean() + logits.log_softmax(0)[i, i].mean()) / 2
    torch.testing.assert_close(clip.contrastive_loss(u, v, 7.0), expected)
    torch.testing.assert_close(clip.contrastive_loss(v, u, 7.0), expected)  # symmetric


def test_log_scale_gradient_matches_autograd(device):
    g = torch.Generator().manual_seed(3)
    u, v = _unit(6, 4, g, device), _unit(6, 4, g, device)
    log_s = torch.tensor(1.3, dtype=torch.float64, device=device, requires_grad=True)
    (grad,) = torch.autograd.grad(clip.contrastive_loss(u, v, log_s.exp()), log_s)
    s, c = log_s.detach().exp(), u @ v.T  # cosines (6 images, 6 texts)
    diag = c.diagonal()
    rows = ((s * c).softmax(1) * c).sum(1) - diag  # E_p[c] − c_ii, image → text
    cols = ((s * c).softmax(0) * c).sum(0) - diag  # text → image
    torch.testing.assert_close(grad, s * (rows.mean() + cols.mean()) / 2)


def test_logit_scale_clamps_at_max_scale():
    scale = clip.LogitScale(temperature=0.07, max_scale=100.0)
    assert math.isclose(float(scale().detach()), 1 / 0.07, rel_tol=1e-6)
    with torch.no_grad():
        scale.log_scale.fill_(math.log(1000.0))
    assert math.isclose(float(scale().detach()), 100.0, rel_tol=1e-6)
    scale().backward()
    assert float(scale.log_scale.grad) == 0.0  # beyond the clamp the scale stops learning


def test_clip_model_embeds_are_unit_and_loss_trains(device):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = clip.CLIP(nn.Flatten(), nn.Embedding(10, 6), 12, 6, 16).to(device)
    images = torch.randn(10, 3, 4, generator=g).to(device)
    texts = torch.arange(10, device=device)
    u, v, s = model(images, texts)
    assert u.shape == v.shape == (10, 16)
    torch.testing.assert_close(u.norm(dim=-1), torch.ones(10, device=device))
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(10, device=device))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    first = model.loss(images, texts).item()
    for _ in range(60):
        opt.zero_grad()
        model.loss(images, texts).backward()
        opt.step()
    assert model.loss(images, texts).item() < 0.2 * first
    # Pairs that already match (each image embedding equals its text's, all orthogonal): the
    # loss falls as the temperature falls, so the gradient raises the learned scale.
    scale = clip.LogitScale().to(device)
    e = torch.eye(10, 16, device=device)
    clip.contrastive_loss(e, e, scale()).backward()
    assert scale.log_scale.grad < 0


def test_recall_at_k():
    sim = torch.tensor([[0.9, 0.1, 0.0], [0.5, 0.4, 0.1], [0.0, 0.3, 0.2]])
    assert float(clip.recall_at_k(sim, 1)) == pytest.approx(1 / 3)
    assert float(clip.recall_at_k(sim, 2)) == pytest.approx(1.0)
    labels = torch.tensor([0, 0, 1])
    assert float(clip.recall_at_k(sim, 1, (labels, labels))) == pytest.approx(2 / 3)


def test_bad_input():
    u, v = torch.randn(4, 3), torch.randn(4, 3)
    with pytest.raises(ValueError, match="same size along dim 0"):
        clip.contrastive_loss(u, torch.randn(5, 3), 1.0)
    with pytest.raises(ValueError, match="same size along dim 1"):
        clip.contrastive_loss(u, torch.randn(4, 2), 1.0)
    with pytest.raises(ValueError, match="must be 2-D"):
        clip.contrastive_loss(u[0], v[0], 1.0)
    with pytest.raises(TypeError, match="floating-point"):
        clip.contrastive_loss(u.long(), v.long(), 1.0)
    with pytest.raises(ValueError, match="must be positive"):
        clip.contrastive_loss(u, v, 0.0)
    with pytest.raises(ValueError, match="must be positive"):
        clip.contrastive_loss(u, v, torch.tensor(-1.0))
    with pytest.raises(ValueError, match="0-D tensor"):
        clip.contrastive_loss(u, v, torch.ones(2))
    with pytest.raises(ValueError, match="temperature must be positive"):
        clip.LogitScale(temperature=0.0)
    with pytest.raises(ValueError, match="exceeds max_scale"):
        clip.LogitScale(temperature=0.001, max_scale=100.0)
    with pytest.raises(ValueError, match="d_embed must be a positive integer"):
        clip.CLIP(nn.Flatten(), nn.Flatten(), 4, 4, 0)
    model = clip.CLIP(nn.Flatten(), nn.Embedding(10, 6), 12, 6, 4)
    with pytest.raises(ValueError, match="image encoder's output must have 12 features"):
        model.encode_image(torch.randn(2, 5, 2))
    with pytest.raises(ValueError, match="2 images but 3 texts"):
        model(torch.randn(2, 3, 4), torch.arange(3))
    with pytest.raises(ValueError, match="k must be at most"):
        clip.recall_at_k(torch.randn(3, 3), 4)
    with pytest.raises(ValueError, match="must be square"):
        clip.recall_at_k(torch.randn(3, 4), 1)
