"""zen.nas: search space and cost model, random search, regularised evolution, DARTS' mixed op."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from zen.counting import count_parameters
from zen.nas import darts, search, space

PLANTED = space.SearchSpace({f"c{i}": tuple(range(4)) for i in range(6)})  # 4^6 = 4096


def planted_score(arch: tuple) -> float:
    """Maximum 6 at (3, 3, 3, 3, 3, 3)."""
    return float(sum(a == 3 for a in arch))


def test_space_sample_mutate_encode():
    s = space.digits_cnn_space()
    assert s.size == len(s) == 3 * 3 * 3 * 2 * 2
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = s.sample(rng)
        s.check(a)
        child = s.mutate(a, rng)
        assert sum(x != y for x, y in zip(a, child)) == 1
        code = s.encode(a)
        assert code.shape == (3 + 3 + 3 + 2 + 2,) and code.sum() == len(s.names)
    assert len(set(map(tuple, (s.encode(a) for a in s)))) == len(s)  # one-hot is injective


def test_constraint_respected():
    s = space.digits_cnn_space(max_flops=100_000)
    rng = np.random.default_rng(1)
    assert 0 < len(s) < s.size
    for _ in range(50):
        a = s.sample(rng)
        assert space.cnn_cost(**s.named(a))["flops"] <= 100_000
        assert space.cnn_cost(**s.named(s.mutate(a, rng)))["flops"] <= 100_000


@pytest.mark.parametrize("arch", [(1, 4, 1, "relu", False), (3, 8, 5, "tanh", True),
                                  (2, 16, 3, "relu", True)])  # fmt: skip
def test_cost_model_matches_built_model(arch):
    named = space.digits_cnn_space().named(arch)
    model = space.DigitsCNN(**named)
    cost = space.cnn_cost(**named)
    assert cost["params"] == count_parameters(model)
    x = torch.randn(3, 1, 8, 8)
    with FlopCounterMode(display=False) as counter:
        assert model(x).shape == (3, 10)
    assert cost["flops"] * 3 == counter.get_total_flops()


def test_cached_evaluator_counts_distinct_calls():
    calls = []
    ev = search.CachedEvaluator(lambda a: calls.append(a) or 1.0)
    for a in [(0,), (1,), (0,), (0,)]:
        ev(a)
    assert ev.n_evaluations == 2 and ev.cache_hits == 2 and calls == [(0,), (1,)]


def test_evolution_population_bookkeeping():
    calls: list[tuple] = []

    def evaluate(a):
        calls.append(a)
        return planted_score(a)

    ev = search.CachedEvaluator(evaluate)
    res = search.regularized_evolution(
        PLANTED, ev, budget=60, rng=np.random.default_rng(0), population_size=8, tournament_size=3
    )
    assert res.n_evaluations == 60 == len(calls) == len(set(calls))  # each arch trained once
    assert res.cache_hits == len(res.history) - 60  # hits are not counted against the budget
    assert len(res.population) == 8
    assert (
        res.population == res.history[-8:]
    )  # ageing: the oldest are removed, whatever their score
    assert len(res.best_so_far()) == 60 and np.all(np.diff(res.best_so_far()) >= 0)


def test_evolution_cache_hits_cost_nothing():
    tiny = space.SearchSpace({"a": (0, 1), "b": (0, 1, 2)})
    ev = search.CachedEvaluator(lambda a: float(a[0] + a[1]))
    res = search.regularized_evolution(tiny, ev, 6, np.random.default_rng(0), 3, 2)
    assert ev.n_evaluations == 6 and res.cache_hits > 0  # the whole space, with revisits
    assert res.best == ((1, 2), 3.0)


def test_random_search_budget_and_shared_cache():
    ev = search.CachedEvaluator(planted_score)
    res = search.random_search(PLANTED, ev, 50, np.random.default_rng(0))
    assert res.n_evaluations == 50 == ev.n_evaluations
    res2 = search.random_search(PLANTED, ev, 10, np.random.default_rng(0))
    assert res2.n_evaluations == 10 and res2.cache_hits >= 50  # same draws: hits first


def test_search_finds_planted_optimum():
    found_evo, found_rand = [], []
    for seed in range(5):
        evo = search.regularized_evolution(
            PLANTED, planted_score, 300, np.random.default_rng(seed), 20, 5
        )
        rnd = search.random_search(PLANTED, planted_score, 300, np.random.default_rng(seed))
        found_evo.append(evo.best[1])
        found_rand.append(rnd.best[1])
    assert all(f == 6.0 for f in found_evo)  # 300 of 4096: evolution climbs to the optimum
    assert np.mean(found_evo) > np.mean(found_rand)


def test_mixed_op_is_weighted_sum():
    torch.manual_seed(0)
    ops = darts.candidate_ops(3)
    m = darts.MixedOp(ops)
    with torch.no_grad():
        m.alpha.copy_(torch.randn(5))
    x = torch.randn(2, 3, 6, 6)
    w = torch.softmax(m.alpha, 0)
    expected = sum(w[i] * op(x) for i, op in enumerate(ops.values()))
    torch.testing.assert_close(m(x), expected)
    assert m.chosen() == m.names[int(m.alpha.argmax())]
    assert len(darts.arch_parameters(m)) == 1
    assert sum(p.numel() for p in darts.weight_parameters(m)) == 9 * (1 + 9 + 25)


def test_first_order_step_matches_hand_written_update():
    torch.manual_seed(0)
    m = darts.MixedOp(darts.candidate_ops(2))
    ref = copy.deepcopy(m)
    wo = torch.optim.SGD(darts.weight_parameters(m), lr=0.1)
    ao = torch.optim.SGD(darts.arch_parameters(m), lr=0.1)
    train = (torch.randn(4, 2, 5, 5), torch.randn(4, 2, 5, 5))
    val = (torch.randn(3, 2, 5, 5), torch.randn(3, 2, 5, 5))
    darts.first_order_step(m, F.mse_loss, train, val, wo, ao)
    # by hand: w ← w − η ∇_w L_train(w, α), then α ← α − η ∇_α L_val(w_new, α)
    ws = darts.weight_parameters(ref)
    grads = torch.autograd.grad(F.mse_loss(ref(train[0]), train[1]), ws)
    with torch.no_grad():
        for w, g in zip(ws, grads):
            w -= 0.1 * g
    (g_alpha,) = torch.autograd.grad(F.mse_loss(ref(val[0]), val[1]), ref.alpha)
    torch.testing.assert_close(m.alpha, ref.alpha - 0.1 * g_alpha)
    for a, b in zip(darts.weight_parameters(m), ws):
        torch.testing.assert_close(a, b)


def test_first_order_search_finds_planted_skip():
    torch.manual_seed(0)
    m = darts.MixedOp(darts.candidate_ops(2))
    wo = torch.optim.Adam(darts.weight_parameters(m), lr=1e-2)
    ao = torch.optim.Adam(darts.arch_parameters(m), lr=3e-2)
    for _ in range(30):
        x = torch.randn(8, 2, 6, 6)
        darts.first_order_step(m, F.mse_loss, (x, x), (x, x), wo, ao)  # the identity target
    assert m.chosen() == "skip"


def test_bad_input():
    with pytest.raises(ValueError, match="non-empty"):
        space.SearchSpace({})
    with pytest.raises(ValueError, match="non-empty sequence"):
        space.SearchSpace({"a": ()})
    with pytest.raises(ValueError, match="repeated"):
        space.SearchSpace({"a": (1, 1)})
    with pytest.raises(ValueError, match="empty"):
        space.digits_cnn_space(max_flops=1)
    with pytest.raises(ValueError, match="one of"):
        PLANTED.encode((9, 0, 0, 0, 0, 0))
    with pytest.raises(ValueError, match="tuple of 6"):
        PLANTED.mutate((0, 0), np.random.default_rng(0))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="tournament_size"):
        search.regularized_evolution(PLANTED, planted_score, 50, rng, 4, 5)
    with pytest.raises(ValueError, match="at least population_size"):
        search.regularized_evolution(PLANTED, planted_score, 5, rng, 10, 3)
    with pytest.raises(ValueError, match="exceeds"):
        search.random_search(space.SearchSpace({"a": (0, 1)}), planted_score, 3, rng)
    with pytest.raises(ValueError, match="budget"):
        search.random_search(PLANTED, planted_score, 0, rng)
    with pytest.raises(TypeError, match="callable"):
        search.CachedEvaluator(3)
    with pytest.raises(ValueError, match="odd"):
        space.DigitsCNN(1, 4, 2)
    with pytest.raises(ValueError, match="activation"):
        space.DigitsCNN(1, 4, 3, "swish")
    with pytest.raises(ValueError, match="non-empty mapping"):
        darts.MixedOp({})
    with pytest.raises(ValueError, match="preserve"):
        darts.MixedOp({"a": torch.nn.Identity(), "b": torch.nn.MaxPool2d(2)})(
            torch.randn(1, 1, 4, 4)
        )
    with pytest.raises(ValueError, match="no MixedOp"):
        lin = torch.nn.Linear(2, 2)
        opt = torch.optim.SGD(lin.parameters(), lr=0.1)
        darts.first_order_step(lin, F.mse_loss, (torch.randn(1, 2),) * 2, (torch.randn(1, 2),) * 2,
                               opt, opt)  # fmt: skip
