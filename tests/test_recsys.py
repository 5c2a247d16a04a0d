"""zen.recsys: matrix factorisation, ranking metrics and A/B statistics against autograd, SciPy
and scikit-learn."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import zen
from zen import recsys


def _logs(gen, n_users=30, n_items=20, n=400):
    users = torch.randint(0, n_users, (n,), generator=gen)
    items = torch.randint(0, n_items, (n,), generator=gen)
    clicks = (torch.rand(n, generator=gen) < 0.3).long()
    return users, items, clicks


def test_forward_and_scores_agree_with_the_formula(device):
    gen = zen.generator(0)
    model = recsys.MatrixFactorization(7, 5, d_model=3, generator=gen).to(device)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    users = torch.tensor([0, 3, 6, 6], device=device)
    items = torch.tensor([4, 0, 2, 4], device=device)
    by_hand = torch.stack(
        [
            model.bias + model.user_bias[u] + model.item_bias[i] + model.user[u] @ model.item[i]
            for u, i in zip(users.tolist(), items.tolist())
        ]
    )
    torch.testing.assert_close(model(users, items), by_hand)
    torch.testing.assert_close(model.scores(users)[torch.arange(4), items], by_hand)
    assert model.scores().shape == (7, 5)


def test_hand_gradient_of_the_click_loss_equals_autograd():
    gen = zen.generator(1)
    users, items, clicks = _logs(gen)
    model = recsys.MatrixFactorization(30, 20, d_model=4, init_std=0.5, generator=gen).double()
    loss = F.binary_cross_entropy_with_logits(model(users, items), clicks.double())
    loss.backward()
    with torch.no_grad():  # dL/ds = (σ(s) − y) / N, then the chain rule into each factor
        err = (torch.sigmoid(model(users, items)) - clicks) / len(users)
        grad_user = torch.zeros_like(model.user).index_add_(
            0, users, err[:, None] * model.item[items]
        )
        grad_item = torch.zeros_like(model.item).index_add_(
            0, items, err[:, None] * model.user[users]
        )
    torch.testing.assert_close(model.user.grad, grad_user)
    torch.testing.assert_close(model.item.grad, grad_item)
    torch.testing.assert_close(model.bias.grad, err.sum())


def test_fit_recovers_a_planted_click_model():
    gen = zen.generator(2)
    n_users, n_items = 200, 60
    truth = 1.5 * torch.randn(n_users, 2, generator=gen) @ torch.randn(2, n_items, generator=gen)
    users = torch.arange(n_users).repeat_interleave(40)
    items = torch.randint(0, n_items, (len(users),), generator=gen)
    clicks = (torch.rand(len(users), generator=gen) < torch.sigmoid(truth[users, items])).long()
    model = recsys.fit_click_model(users, items, clicks, n_users, n_items, d_model=4, generator=gen)
    with torch.no_grad():
        learned = model.scores()
    corr = torch.corrcoef(torch.stack([learned.flatten(), truth.flatten()]))[0, 1]
    assert corr > 0.7


def test_top_k_excludes_and_orders():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7], [1.0, 0.0, 0.2, 0.3]])
    exclude = torch.tensor([[False, True, False, False], [True, False, False, False]])
    assert recsys.top_k(scores, 2, exclude).tolist() == [[3, 2], [3, 2]]
    assert recsys.top_k(scores, 1).tolist() == [[1], [0]]


def test_recall_and_ndcg_by_hand_and_against_sklearn():
    ndcg_score = pytest.importorskip("sklearn.metrics").ndcg_score
    relevant = torch.tensor([[True, False, True, False, False], [False, False, False, False, True]])
    ranked = torch.tensor([[1, 2, 0], [4, 0, 1]])
    assert recsys.recall_at_k(ranked, relevant) == pytest.approx((1.0 + 1.0) / 2)
    # user 0: hits at ranks 2 and 3; ideal: ranks 1 and 2
    u0 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert recsys.ndcg_at_k(ranked, relevant) == pytest.approx((u0 + 1.0) / 2)
    gen = zen.generator(3)
    scores = torch.randn(40, 30, generator=gen, dtype=torch.float64)
    relevant = torch.rand(40, 30, generator=gen) < 0.15
    relevant[:, 0] = True  # every user has a relevant item
    for k in (1, 5, 10):
        ranked = recsys.top_k(scores, k)
        ref = ndcg_score(relevant.numpy().astype(float), scores.numpy(), k=k)
        assert recsys.ndcg_at_k(ranked, relevant) == pytest.approx(ref, abs=1e-12)


def test_sample_size_and_power_against_scipy():
    norm = pytest.importorskip("scipy.stats").norm
    for p_a, p_b, alpha, target in [
        (0.1, 0.12, 0.05, 0.8),
        (0.4, 0.35, 0.01, 0.9),
        (0.02, 0.03, 0.1, 0.5),
    ]:
        n = recsys.sample_size(p_a, p_b, alpha, target)
        p_bar = (p_a + p_b) / 2
        sd0, sd1 = math.sqrt(2 * p_bar * (1 - p_bar)), math.sqrt(p_a * (1 - p_a) + p_b * (1 - p_b))

        def power(m):
            return norm.cdf((abs(p_b - p_a) * math.sqrt(m) - norm.ppf(1 - alpha / 2) * sd0) / sd1)

        assert power(n) >= target > power(n - 1)  # the smallest n that reaches the target
        assert recsys.power(n, p_a, p_b, alpha) == pytest.approx(power(n), abs=1e-12)


def test_ab_test_against_chi2_contingency_and_a_vector_of_experiments():
    stats = pytest.importorskip("scipy.stats")
    for x_a, n_a, x_b, n_b in [(120, 1000, 150, 1000), (30, 400, 22, 380), (5, 50, 12, 61)]:
        res = recsys.ab_test(x_a, n_a, x_b, n_b)
        table = np.array([[x_a, n_a - x_a], [x_b, n_b - x_b]])
        chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
        assert float(res.z) ** 2 == pytest.approx(chi2, rel=1e-10)
        assert float(res.p_value) == pytest.approx(p, rel=1e-8)
        se = math.sqrt(x_a / n_a * (1 - x_a / n_a) / n_a + x_b / n_b * (1 - x_b / n_b) / n_b)
        low, high = stats.norm.interval(0.95, loc=x_b / n_b - x_a / n_a, scale=se)
        assert (float(res.ci_low), float(res.ci_high)) == pytest.approx((low, high), rel=1e-10)
    many = recsys.ab_test(torch.tensor([120, 30]), torch.tensor([1000, 400]), 150, 1000)
    assert many.z.shape == (2,)
    assert float(many.z[0]) == pytest.approx(float(recsys.ab_test(120, 1000, 150, 1000).z))
    none = recsys.ab_test(0, 10, 0, 12)
    assert float(none.z) == 0 and float(none.p_value) == 1


def test_retrodesign_against_simulation():
    gen = zen.generator(4)
    for d in (0.5, 1.5, 3.0):
        power, type_s, exaggeration = recsys.retrodesign(d, 1.0)
        est = d + torch.randn(400_000, generator=gen, dtype=torch.float64)
        sig = est.abs() > 1.959963984540054
        assert power == pytest.approx(sig.double().mean().item(), abs=0.004)
        assert type_s == pytest.approx((est[sig] < 0).double().mean().item(), abs=0.01)
        assert exaggeration == pytest.approx((est[sig].abs().mean() / d).item(), rel=0.01)


T, B = torch.tensor, torch.bool
MF = recsys.MatrixFactorization


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: MF(0, 5), ValueError, "n_users"),
        (lambda: MF(3, 5)(T([0.0]), T([1])), TypeError, "integer ids"),
        (lambda: MF(3, 5)(T([3]), T([1])), ValueError, r"\[0, 3\)"),
        (lambda: MF(3, 5)(T([0, 1]), T([1])), ValueError, "shape"),
        (lambda: recsys.fit_click_model(T([0]), T([1]), T([2]), 3, 5), ValueError, "0 or 1"),
        (lambda: recsys.top_k(torch.zeros(2, 3), 4), ValueError, "exceeds"),
        (
            lambda: recsys.top_k(torch.zeros(2, 3), 2, torch.ones(2, 3, dtype=B)),
            ValueError,
            "fewer",
        ),
        (lambda: recsys.recall_at_k(T([[0]]), T([[1, 0]])), TypeError, "boolean"),
        (lambda: recsys.ndcg_at_k(T([[0]]), torch.zeros(1, 2, dtype=B)), ValueError, "no item"),
        (lambda: recsys.ndcg_at_k(T([[5]]), torch.ones(1, 2, dtype=B)), ValueError, "ranked"),
        (lambda: recsys.sample_size(0.1, 0.1), ValueError, "differ"),
        (lambda: recsys.sample_size(0.0, 0.1), ValueError, "p_a"),
        (lambda: recsys.sample_size(0.1, 0.2, alpha=1.5), ValueError, "alpha"),
        (lambda: recsys.sample_size(0.1, 0.2, power=1.0), ValueError, "power"),
        (lambda: recsys.power(0, 0.1, 0.2), ValueError, "n must"),
        (lambda: recsys.ab_test(11, 10, 3, 10), ValueError, r"clicks_a must lie"),
        (lambda: recsys.ab_test(1, 0, 3, 10), ValueError, "n_a"),
        (lambda: recsys.ab_test(1.5, 10, 3, 10), TypeError, "clicks_a"),
        (lambda: recsys.ab_test(T([1.5]), 10, 3, 10), ValueError, "whole counts"),
        (lambda: recsys.retrodesign(0.0, 1.0), ValueError, "non-zero"),
        (lambda: recsys.retrodesign(1.0, -1.0), ValueError, "se"),
    ],
)
def test_bad_inputs_are_rejected(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_dense_and_gathered_fits_agree():
    gen = zen.generator(5)
    users, items, clicks = _logs(gen, n=300)
    users[:20], items[:20] = users[20:40], items[20:40]  # repeated pairs, clicked differently
    fits = [
        recsys.fit_click_model(
            users, items, clicks, 30, 20, steps=30, generator=zen.generator(6), dense=dense
        )
        for dense in (True, False)
    ]
    with torch.no_grad():
        torch.testing.assert_close(fits[0].scores(), fits[1].scores(), atol=1e-4, rtol=1e-4)
