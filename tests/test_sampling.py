"""zen.sampling: greedy, temperature, top-k and top-p decoding."""

from __future__ import annotations

import pytest
import torch

from zen.sampling import filter_logits, next_token_probs, sample_next


def test_greedy_is_argmax(device):
    logits = torch.randn(5, 11, device=device)
    assert torch.equal(sample_next(logits, temperature=0), logits.argmax(-1, keepdim=True))
    probs = next_token_probs(logits, temperature=0)
    assert torch.equal(probs.argmax(-1), logits.argmax(-1)) and torch.all(probs.sum(-1) == 1)


def test_temperature_sharpens_and_flattens():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))

    def entropy(p):
        return -(p * p.clamp_min(1e-30).log()).sum(-1)

    cold, base, hot = (entropy(next_token_probs(logits, t)) for t in (0.5, 1.0, 2.0))
    assert torch.all(cold < base) and torch.all(base < hot)
    assert torch.allclose(next_token_probs(logits, 1.0), logits.softmax(-1))


def test_top_k_matches_definition():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    probs = next_token_probs(logits, top_k=2)
    assert torch.equal(probs[0] > 0, torch.tensor([False, True, False, True, False]))
    assert torch.allclose(probs[0, [1, 3]], logits[0, [1, 3]].softmax(-1))
    assert torch.equal(filter_logits(logits, top_k=10), logits)  # k ≥ vocab keeps everything


def test_top_p_keeps_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.05, 0.3, 0.15]])
    logits = probs.log()
    kept = lambda p: (next_token_probs(logits, top_p=p)[0] > 0).tolist()  # noqa: E731
    assert kept(0.5) == [True, False, False, False]  # 0.5 alone reaches 0.5
    assert kept(0.6) == [True, False, True, False]  # 0.5 + 0.3
    assert kept(0.85) == [True, False, True, True]  # 0.5 + 0.3 + 0.15 = 0.95 ≥ 0.85
    assert kept(1.0) == [True, True, True, True]
    assert kept(1e-6) == [True, False, False, False]  # the top token always survives


def test_sampling_frequencies_follow_the_distribution():
    logits = torch.tensor([[0.0, 1.0, 2.0]]).expand(20_000, 3).contiguous()
    g = torch.Generator().manual_seed(0)
    draws = sample_next(logits, temperature=1.0, generator=g).flatten()
    freq = torch.bincount(draws, minlength=3).float() / len(draws)
    assert torch.allclose(freq, logits[0].softmax(-1), atol=0.02)
    draws_k = sample_next(logits, top_k=1, generator=g)
    assert torch.all(draws_k == 2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": -1.0}, "temperature must be"),
        ({"top_k": 0}, "top_k must be a positive integer"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_next(torch.randn(2, 5), **kwargs)


def test_rejects_bad_logits():
    with pytest.raises(ValueError, match="logits must be 2-D"):
        sample_next(torch.randn(5))
    with pytest.raises(TypeError, match="floating-point"):
        sample_next(torch.ones(2, 5, dtype=torch.long))
