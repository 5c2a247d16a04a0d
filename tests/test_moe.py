"""zen.moe: routing, dispatch with capacity, the auxiliary losses, Mixtral's block, experts
sharded over processes."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from zen.moe import (
    ExpertParallelMoE,
    MoE,
    capacity,
    combine,
    dispatch,
    load_balancing_loss,
    route,
    z_loss,
)
from zen.parallel import launch


def hf_block(n_experts: int, k: int, d_model: int = 16, d_ff: int = 24, seed: int = 0):
    from transformers import MixtralConfig
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    cfg = MixtralConfig(
        hidden_size=d_model,
        intermediate_size=d_ff,
        num_local_experts=n_experts,
        num_experts_per_tok=k,
    )
    cfg._experts_implementation = "eager"  # the reference loop, whatever kernels are installed
    torch.manual_seed(seed)
    block = MixtralSparseMoeBlock(cfg).eval()
    with torch.no_grad():
        for p in block.parameters():  # Mixtral's weights start empty: a random draw
            p.normal_(0.0, 0.3)
    return block


@pytest.mark.parametrize("n_experts, k", [(4, 1), (8, 2), (6, 3), (3, 3)])
def test_from_hf_matches_mixtral_block(n_experts, k, device):
    block = hf_block(n_experts, k, seed=n_experts + k).to(device)
    moe = MoE.from_hf(block)
    assert (moe.n_experts, moe.top_k, moe.d_ff) == (n_experts, k, 24)
    x = torch.randn(3, 11, 16, generator=torch.Generator().manual_seed(k)).to(device)
    with torch.no_grad():
        assert torch.allclose(moe(x), block(x), atol=1e-5, rtol=0)


def test_aux_loss_matches_mixtral_loss_function():
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    logits = torch.randn(40, 8, generator=torch.Generator().manual_seed(1))
    _, experts, probs = route(logits, 2)
    ref = load_balancing_loss_func((logits,), 8, 2)
    assert torch.allclose(load_balancing_loss(probs, experts, "tokens"), ref, atol=1e-6)
    assert torch.allclose(load_balancing_loss(probs, experts), ref / 2, atol=1e-6)


def test_aux_loss_by_hand():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    # top-1: counts (2, 1, 1) -> f = (1/2, 1/4, 1/4); P = (0.4, 0.35, 0.25)
    top1 = torch.tensor([[0], [1], [2], [0]])
    expect = 3 * (0.5 * 0.4 + 0.25 * 0.35 + 0.25 * 0.25)  # 1.05
    assert load_balancing_loss(probs, top1).item() == pytest.approx(expect)
    assert load_balancing_loss(probs, top1, "tokens").item() == pytest.approx(expect)
    # top-2: counts (2, 4, 2) -> f = (1/4, 1/2, 1/4) of 8 assignments, or (1/2, 1, 1/2) per token
    top2 = torch.tensor([[0, 1], [1, 2], [2, 1], [0, 1]])
    expect2 = 3 * (0.25 * 0.4 + 0.5 * 0.35 + 0.25 * 0.25)  # 1.0125
    assert load_balancing_loss(probs, top2).item() == pytest.approx(expect2)
    assert load_balancing_loss(probs, top2, "tokens").item() == pytest.approx(2 * expect2)


def test_aux_loss_gradient_flows_through_probabilities_only():
    logits = torch.randn(30, 4, generator=torch.Generator().manual_seed(2), requires_grad=True)
    _, experts, probs = route(logits, 1)
    load_balancing_loss(probs, experts).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_z_loss_by_hand():
    logits = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    lse = torch.tensor(
        [torch.log(torch.tensor(2.0)), 2 + torch.log1p(torch.exp(torch.tensor(-1.0)))]
    )
    assert torch.allclose(z_loss(logits), (lse**2).mean())


def test_route_renormalises_in_fp32():
    logits = torch.randn(20, 6, generator=torch.Generator().manual_seed(3)).bfloat16()
    weights, experts, probs = route(logits, 2)
    assert probs.dtype == weights.dtype == torch.float32
    assert torch.allclose(weights.sum(-1), torch.ones(20))
    assert torch.equal(experts, probs.topk(2, -1).indices)


def test_dispatch_with_capacity_matches_a_loop():
    g = torch.Generator().manual_seed(4)
    n, k, e = 50, 2, 5
    experts = torch.stack([torch.randperm(e, generator=g)[:k] for _ in range(n)])
    cap = capacity(n, e, k, 0.8)
    assert cap == 16
    order, counts, kept_counts = dispatch(experts, e, cap)
    expected, fill = [], [0] * e  # first choices of every token first, then second choices
    for slot in range(k):
        for t in range(n):
            ex = int(experts[t, slot])
            if fill[ex] < cap:
                fill[ex] += 1
                expected.append((ex, slot * n + t))
    assert order.tolist() == [a for _, a in sorted(expected)]
    assert kept_counts.tolist() == fill
    assert counts.tolist() == torch.bincount(experts.flatten(), minlength=e).tolist()


def test_moe_equals_a_dense_loop_and_counts_drops(device):
    torch.manual_seed(5)
    moe = MoE(8, 12, 4, top_k=2, capacity_factor=0.75).to(device)
    x = torch.randn(2, 9, 8, device=device)
    y, r = moe(x, return_routing=True)
    tokens = x.reshape(-1, 8)
    cap = capacity(18, 4, 2, 0.75)
    ref, fill, dropped = torch.zeros_like(tokens), [0] * 4, 0
    for slot in range(2):
        for t in range(18):
            e = int(r.experts[t, slot])
            if fill[e] == cap:
                dropped += 1
                continue
            fill[e] += 1
            gate, up = (tokens[t] @ moe.w_gate_up[e].T).chunk(2)
            ref[t] += r.weights[t, slot] * (torch.nn.functional.silu(gate) * up) @ moe.w_down[e].T
    assert torch.allclose(y.reshape(-1, 8), ref, atol=1e-5)
    assert r.dropped == dropped > 0 and r.drop_rate == dropped / 36


def test_combine_without_capacity_is_the_weighted_sum():
    weights = torch.tensor([[0.75, 0.25], [0.5, 0.5]])
    experts = torch.tensor([[1, 0], [0, 1]])
    order, _, _ = dispatch(experts, 2)
    rows = torch.arange(4.0)[order][:, None]  # each assignment's own index as its output
    y = combine(rows, order, weights)  # assignment a = slot·N + token
    assert y.flatten().tolist() == [0.75 * 0 + 0.25 * 2, 0.5 * 1 + 0.5 * 3]


def test_parameter_counts():
    moe = MoE(8, 12, 4, top_k=2)
    counts = moe.parameter_counts()
    assert counts["total"] == sum(p.numel() for p in moe.parameters()) == 32 + 4 * 3 * 8 * 12
    assert counts["active"] == 32 + 2 * 3 * 8 * 12


def test_errors_name_expected_and_got():
    with pytest.raises(ValueError, match="top_k must be at most n_experts=4, got top_k=5"):
        MoE(8, 12, 4, top_k=5)
    with pytest.raises(ValueError, match="capacity_factor must be positive"):
        MoE(8, 12, 4, capacity_factor=0.0)
    with pytest.raises(ValueError, match="x must have 8 features"):
        MoE(8, 12, 4)(torch.randn(3, 7))
    with pytest.raises(TypeError, match="floating-point"):
        MoE(8, 12, 4)(torch.ones(3, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="k must be at most n_experts=3"):
        route(torch.randn(4, 3), 4)
    with pytest.raises(TypeError, match="int64 expert indices"):
        dispatch(torch.zeros(4, 1, dtype=torch.int32), 3)
    with pytest.raises(ValueError, match="normalize must be one of"):
        load_balancing_loss(torch.rand(4, 3), torch.zeros(4, 1, dtype=torch.long), "experts")
    with pytest.raises(ValueError, match="same size along dim 0"):
        load_balancing_loss(torch.rand(4, 3), torch.zeros(5, 1, dtype=torch.long))
    with pytest.raises(TypeError, match="MixtralSparseMoeBlock"):
        MoE.from_hf(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="n_experts must be divisible by world_size"):
        ExpertParallelMoE(MoE(8, 12, 6), 0, 4)
    with pytest.raises(ValueError, match="drops nothing"):
        ExpertParallelMoE(MoE(8, 12, 4, capacity_factor=1.0), 0, 2)


def _expert_parallel(moe, xs, target):
    rank = dist.get_rank()
    ep = ExpertParallelMoE(moe, rank, dist.get_world_size())
    x = xs[rank].clone().requires_grad_()
    y = ep(x)
    (y * target[rank]).sum().backward()
    router_grad = ep.router.weight.grad.clone()
    dist.all_reduce(router_grad)  # the router is replicated: data-parallel gradient
    return y.detach(), x.grad, ep.w_gate_up.grad, ep.w_down.grad, router_grad


@pytest.mark.parametrize("world_size, n_experts, k", [(2, 4, 2), (4, 8, 1)])
def test_expert_parallel_equals_single_process(world_size, n_experts, k):
    torch.manual_seed(6)
    moe = MoE(8, 12, n_experts, top_k=k)
    xs, target = torch.randn(world_size, 13, 8), torch.randn(world_size, 13, 8)
    results = launch(_expert_parallel, world_size, moe, xs, target)
    x = xs.clone().requires_grad_()
    (moe(x) * target).sum().backward()
    local = n_experts // world_size
    for rank, (y, gx, g_gate_up, g_down, g_router) in enumerate(results):
        lo = rank * local
        assert torch.allclose(y, moe(xs[rank]), atol=1e-6)
        assert torch.allclose(gx, x.grad[rank], atol=1e-5)
        assert torch.allclose(g_gate_up, moe.w_gate_up.grad[lo : lo + local], atol=1e-5)
        assert torch.allclose(g_down, moe.w_down.grad[lo : lo + local], atol=1e-5)
        assert torch.allclose(g_router, moe.router.weight.grad, atol=1e-5)
