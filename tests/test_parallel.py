"""zen.parallel: every distributed algorithm equals its single-process reference.

The workers are gloo CPU processes.
"""

from __future__ import annotations

import importlib
import time

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from zen.parallel import launch
from zen.parallel.alpha_beta import all_reduce_times, exchange_times
from zen.parallel.collectives import (
    Traffic,
    all_reduce_time,
    bytes_sent_per_rank,
    central_all_reduce,
    fit_alpha_beta,
    ring_all_reduce,
)
from zen.parallel.data_parallel import broadcast_parameters, data_parallel_step, shard
from zen.parallel.overlap import OverlappedAllReduce
from zen.parallel.parameter_server import parameter_server_step
from zen.parallel.pipeline import (
    bubble_fraction,
    gpipe_schedule,
    one_f_one_b_schedule,
    pipeline_step,
    schedule,
    simulate,
)
from zen.parallel.ring_attention import ring_attention
from zen.parallel.tensor_parallel import (
    ColumnParallelLinear,
    CommCounter,
    ParallelMLP,
    ParallelSelfAttention,
    RowParallelLinear,
)
from zen.parallel.zero import zero_communication_per_step, zero_memory_per_device

# ---------------------------------------------------------------------------------- launch


def _rank_and_sum() -> tuple[int, float]:
    t = torch.tensor([float(dist.get_rank())])
    dist.all_reduce(t)
    return dist.get_rank(), t.item()


def test_launch_returns_one_result_per_rank():
    assert launch(_rank_and_sum, 3) == [(0, 3.0), (1, 3.0), (2, 3.0)]


def test_launch_accepts_a_closure():
    offset = 10.0  # a closure cannot be pickled: this works because workers are forked
    assert launch(lambda: dist.get_rank() + offset, 2) == [10.0, 11.0]


def _fails_on_rank_one() -> None:
    if dist.get_rank() == 1:
        raise ValueError("boom on purpose")
    dist.barrier()


def test_launch_names_the_failing_rank():
    with pytest.raises(RuntimeError, match=r"(?s)rank 1 of 2 failed.*boom on purpose"):
        launch(_fails_on_rank_one, 2, timeout=20)


def test_launch_times_out_instead_of_hanging():
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="did not finish"):
        launch(lambda: time.sleep(30), 2, timeout=1.0)
    assert time.monotonic() - start < 10


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"world_size": 0}, "world_size"),
        ({"world_size": 2, "backend": "mpi"}, "backend"),
        ({"world_size": 2, "timeout": 0}, "timeout"),
    ],
)
def test_launch_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        launch(_rank_and_sum, **kwargs)


# ----------------------------------------------------------------------------- collectives


def _ring_vs_builtin(shape: tuple[int, ...]) -> tuple[float, int, int]:
    g = torch.Generator().manual_seed(dist.get_rank())
    x = torch.randn(shape, generator=g)
    expected = x.clone()
    dist.all_reduce(expected)
    traffic = Traffic()
    got = ring_all_reduce(x.clone(), traffic)
    return (got - expected).abs().max().item(), traffic.bytes, traffic.messages


@pytest.mark.parametrize("world_size, shape", [(2, (7,)), (3, (4, 6)), (4, (2,))])
def test_ring_all_reduce_equals_dist_all_reduce(world_size, shape):
    for err, _, _ in launch(_ring_vs_builtin, world_size, shape):
        assert err < 1e-5


def test_ring_sends_two_p_minus_one_over_p_of_the_data():
    p, n = 4, 400
    out = launch(_ring_vs_builtin, p, (n,))
    for _, sent, messages in out:
        assert messages == 2 * (p - 1)
        assert sent == bytes_sent_per_rank(4 * n, p, "ring") == 2 * (p - 1) / p * 4 * n


def _central() -> tuple[float, int]:
    x = torch.full((5,), float(dist.get_rank() + 1))
    traffic = Traffic()
    central_all_reduce(x, traffic=traffic)
    return x[0].item(), traffic.bytes


def test_central_all_reduce_sums_and_loads_the_root():
    p = 3
    out = launch(_central, p)
    assert [v for v, _ in out] == [6.0] * p
    assert out[0][1] == bytes_sent_per_rank(20, p, "central") == (p - 1) * 20  # the root
    assert out[1][1] == 20  # a worker sends its tensor once


def test_alpha_beta_model():
    alpha, beta, n = 1e-5, 1e-9, 1e8
    assert all_reduce_time(n, 1, alpha, beta) == 0.0
    assert all_reduce_time(n, 4, alpha, beta, "ring") == pytest.approx(6 * alpha + 1.5 * n * beta)
    assert all_reduce_time(n, 8, alpha, beta, "tree") == pytest.approx(6 * (alpha + n * beta))
    assert all_reduce_time(n, 8, alpha, beta, "central") == pytest.approx(14 * (alpha + n * beta))
    # the ring's bandwidth term stays below 2nβ however many ranks; the server's grows with p
    ring = [all_reduce_time(n, p, 0, beta, "ring") for p in (2, 8, 64, 1024)]
    assert all(t < 2 * n * beta for t in ring) and ring == sorted(ring)
    assert all_reduce_time(n, 64, 0, beta, "central") / all_reduce_time(
        n, 64, 0, beta, "ring"
    ) == pytest.approx(64)  # = p
    with pytest.raises(ValueError, match="algorithm"):
        all_reduce_time(n, 4, alpha, beta, "butterfly")
    with pytest.raises(ValueError, match="world_size"):
        all_reduce_time(n, 0, alpha, beta)


def test_fit_alpha_beta_recovers_the_line():
    sizes = [1e3, 1e4, 1e5, 1e6]
    alpha, beta = fit_alpha_beta(sizes, [2e-5 + 3e-10 * s for s in sizes])
    assert alpha == pytest.approx(2e-5, rel=1e-6) and beta == pytest.approx(3e-10, rel=1e-6)
    with pytest.raises(ValueError, match="at least two"):
        fit_alpha_beta([1.0], [1.0])


# -------------------------------------------------------------------------- data parallel


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def _data(n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def _single_process(steps: int, make_opt) -> tuple[list[float], list[torch.Tensor]]:
    model, (x, y) = _model(), _data()
    opt = make_opt(model.parameters())
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, [p.detach() for p in model.parameters()]


def _dp(steps: int, algorithm: str) -> tuple[list[float], list[torch.Tensor]]:
    model, (x, y) = _model(), _data()
    broadcast_parameters(model)
    r, p = dist.get_rank(), dist.get_world_size()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    xs, ys = shard(x, r, p), shard(y, r, p)
    losses = [
        data_parallel_step(model, opt, F.cross_entropy, xs, ys, algorithm) for _ in range(steps)
    ]
    return losses, [p.detach() for p in model.parameters()]


@pytest.mark.parametrize("world_size, algorithm", [(2, "builtin"), (3, "ring")])
def test_data_parallel_equals_single_process(world_size, algorithm):
    ref_losses, ref_params = _single_process(3, lambda ps: torch.optim.SGD(ps, lr=0.5))
    for losses, params in launch(_dp, world_size, 3, algorithm):
        assert losses == pytest.approx(ref_losses, abs=1e-6)
        for a, b in zip(params, ref_params):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_shard_rejects_a_world_size_that_does_not_divide():
    with pytest.raises(ValueError, match="must divide"):
        shard(torch.zeros(10, 2), 0, 3)
    with pytest.raises(ValueError, match="rank"):
        shard(torch.zeros(10, 2), 2, 2)


def _ps(steps: int) -> tuple[list[torch.Tensor], int]:
    model, (x, y) = _model(), _data()
    r, p = dist.get_rank(), dist.get_world_size()
    traffic = Traffic()
    for _ in range(steps):
        parameter_server_step(model, 0.5, F.cross_entropy, shard(x, r, p), shard(y, r, p), traffic)
    return [q.detach() for q in model.parameters()], traffic.bytes


def test_parameter_server_equals_sgd_and_its_server_carries_p_minus_one_copies():
    _, ref_params = _single_process(2, lambda ps: torch.optim.SGD(ps, lr=0.5))
    out = launch(_ps, 3, 2)
    n_bytes = 4 * sum(q.numel() for q in ref_params)
    for params, _ in out:
        for a, b in zip(params, ref_params):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert out[0][1] == 2 * 2 * n_bytes  # 2 steps × (p - 1) = 2 copies sent by the server
    assert out[1][1] == 2 * n_bytes  # a worker: one gradient per step


# ----------------------------------------------------------------------------------- ZeRO


def test_zero_reproduces_table_1_of_the_paper():
    # Rajbhandari et al. 2020, Table 1: Ψ = 7.5B, K = 12, N_d = 64
    gb = [zero_memory_per_device(7.5e9, 64, stage) / 1e9 for stage in range(4)]
    assert [round(g, d) for g, d in zip(gb, [0, 1, 1, 2])] == [120, 31.4, 16.6, 1.88]
    assert zero_memory_per_device(7.5e9, 1, 3) == zero_memory_per_device(7.5e9, 1, 0)


def test_zero_communication_is_one_and_a_half_times_for_stage_3():
    base = zero_communication_per_step(1e9, 8, 0)
    assert base == pytest.approx(2 * 7 / 8 * 2e9)
    assert zero_communication_per_step(1e9, 8, 2) == base
    assert zero_communication_per_step(1e9, 8, 3) == pytest.approx(1.5 * base)


@pytest.mark.parametrize("stage", [4, -1, "2", True])
def test_zero_rejects_an_unknown_stage(stage):
    with pytest.raises(ValueError, match="ZeRO stage"):
        zero_memory_per_device(1e9, 8, stage)


# ------------------------------------------------------------------------- tensor parallel


def _tp_mlp(d: int, d_ff: int) -> dict:
    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(d, d_ff), nn.Linear(d_ff, d)
    x = torch.randn(2, 5, d)
    layer = ParallelMLP(fc1, fc2)
    x_tp = x.clone().requires_grad_()
    with CommCounter() as counter:
        y = layer(x_tp)
        y.square().sum().backward()
    return {
        "y": y.detach(),
        "x_grad": x_tp.grad,
        "fc1_grad": layer.fc1.weight.grad,
        "fc2_grad": layer.fc2.weight.grad,
        "fc2_bias_grad": layer.fc2.bias.grad,
        "all_reduces": (counter.forward, counter.backward),
    }


@pytest.mark.parametrize("world_size", [2, 4])
def test_parallel_mlp_equals_the_single_device_mlp(world_size):
    d, d_ff = 8, 16
    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(d, d_ff), nn.Linear(d_ff, d)
    x = torch.randn(2, 5, d, requires_grad=True)
    y = fc2(F.gelu(fc1(x)))
    y.square().sum().backward()
    out = launch(_tp_mlp, world_size, d, d_ff)
    for r, res in enumerate(out):
        torch.testing.assert_close(res["y"], y.detach())
        torch.testing.assert_close(res["x_grad"], x.grad)
        torch.testing.assert_close(res["fc1_grad"], fc1.weight.grad.chunk(world_size, 0)[r])
        torch.testing.assert_close(res["fc2_grad"], fc2.weight.grad.chunk(world_size, 1)[r])
        torch.testing.assert_close(res["fc2_bias_grad"], fc2.bias.grad)
        assert res["all_reduces"] == (1, 1)  # one all-reduce in forward, one in backward


def _tp_attention(d: int, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(d, heads, batch_first=True)
    x = torch.randn(2, 5, d, requires_grad=True)
    y = ParallelSelfAttention(mha)(x)
    y.square().sum().backward()
    return y.detach(), x.grad


def test_parallel_attention_equals_multihead_attention():
    d, heads = 8, 4
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(d, heads, batch_first=True)
    x = torch.randn(2, 5, d, requires_grad=True)
    y = mha(x, x, x, need_weights=False)[0]
    y.square().sum().backward()
    for y_tp, g_tp in launch(_tp_attention, 2, d, heads):
        torch.testing.assert_close(y_tp, y.detach(), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(g_tp, x.grad, atol=1e-5, rtol=1e-4)


def test_tensor_parallel_rejects_sizes_the_world_does_not_divide():
    with pytest.raises(ValueError, match="must divide out_features"):
        ColumnParallelLinear(nn.Linear(4, 6), world_size=4, rank=0)
    with pytest.raises(ValueError, match="must divide in_features"):
        RowParallelLinear(nn.Linear(6, 4), world_size=4, rank=0)
    with pytest.raises(ValueError, match="must divide num_heads"):
        ParallelSelfAttention(nn.MultiheadAttention(8, 2, batch_first=True), world_size=4, rank=1)
    with pytest.raises(ValueError, match="rank"):
        ColumnParallelLinear(nn.Linear(4, 8), world_size=2, rank=2)


# ------------------------------------------------------------------------------- pipeline


@pytest.mark.parametrize("p, m", [(2, 1), (4, 4), (4, 8), (3, 16)])
@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
def test_simulated_bubble_matches_the_formula(name, p, m):
    timeline = simulate(schedule(name, p, m), t_forward=1.0, t_backward=2.0)
    assert timeline.bubble == pytest.approx(bubble_fraction(p, m))
    assert timeline.makespan == pytest.approx((m + p - 1) * 3.0)


def test_one_f_one_b_holds_fewer_activations_than_gpipe():
    p, m = 4, 8
    assert simulate(gpipe_schedule(p, m)).peak_activations() == [m] * p
    assert simulate(one_f_one_b_schedule(p, m)).peak_activations() == [p - s for s in range(p)]


def test_simulate_detects_a_deadlock():
    bad = [
        [("B", 0), ("F", 0)],
        [("F", 0), ("B", 0)],
    ]  # stage 0 waits on a backward before any forward
    with pytest.raises(ValueError, match="deadlock"):
        simulate(bad)


def test_pipeline_rejects_bad_input():
    with pytest.raises(ValueError, match="micro-batches"):
        gpipe_schedule(4, 0)
    with pytest.raises(ValueError, match="schedule must be one of"):
        schedule("interleaved", 4, 8)
    with pytest.raises(ValueError, match="num_stages"):
        bubble_fraction(0, 4)


def _stages() -> list[nn.Module]:
    torch.manual_seed(0)
    return [nn.Sequential(nn.Linear(4, 4), nn.Tanh()) for _ in range(3)]


def _pipeline(name: str, m: int) -> tuple[float, list[torch.Tensor]]:
    stage = _stages()[dist.get_rank()]
    x, y = (
        torch.randn(8, 4, generator=torch.Generator().manual_seed(2)),
        torch.randn(8, 4, generator=torch.Generator().manual_seed(3)),
    )
    loss = pipeline_step(stage, x, y, F.mse_loss, m, (8 // m, 4), name)
    return loss, [q.grad for q in stage.parameters()]


@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
def test_pipeline_step_equals_single_process(name):
    stages = _stages()
    x, y = (
        torch.randn(8, 4, generator=torch.Generator().manual_seed(2)),
        torch.randn(8, 4, generator=torch.Generator().manual_seed(3)),
    )
    loss = F.mse_loss(nn.Sequential(*stages)(x), y)
    loss.backward()
    for s, (got_loss, grads) in enumerate(launch(_pipeline, 3, name, 4)):
        assert got_loss == pytest.approx(loss.item(), abs=1e-6)
        for g, q in zip(grads, stages[s].parameters()):
            torch.testing.assert_close(g, q.grad)


def _pipeline_float64() -> tuple[float, list[torch.Tensor]]:
    stage = _stages()[dist.get_rank()].double()
    x = torch.randn(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y = torch.randn(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    loss = pipeline_step(stage, x, y, F.mse_loss, 4, (2, 4))
    return loss, [q.grad for q in stage.parameters()]


def test_pipeline_step_receives_in_the_stage_dtype():
    # the receive buffers follow the stage's parameters (dtype here; device on a GPU), so a
    # float64 pipeline equals the float64 model in one process to float64 precision
    stages = [s.double() for s in _stages()]
    x = torch.randn(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y = torch.randn(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    loss = F.mse_loss(nn.Sequential(*stages)(x), y)
    loss.backward()
    for s, (got_loss, grads) in enumerate(launch(_pipeline_float64, 3)):
        assert got_loss == pytest.approx(loss.item(), abs=1e-12)
        for g, q in zip(grads, stages[s].parameters()):
            assert g.dtype == torch.float64
            torch.testing.assert_close(g, q.grad, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------- pipeline errors


def _pipeline_bad_micro() -> float:
    stage = _stages()[dist.get_rank()]
    return pipeline_step(stage, torch.zeros(6, 4), torch.zeros(6, 4), F.mse_loss, 4, (2, 4))


def test_pipeline_step_rejects_micro_batches_that_do_not_divide_the_batch():
    with pytest.raises(RuntimeError, match="num_micro 4 must divide the batch size"):
        launch(_pipeline_bad_micro, 3, timeout=20)


# ------------------------------------------------------------------------------- torchrun


def test_torchrun_entry_point_matches_one_process(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "zen.parallel.train",
        "--strategy",
        "scratch",
        "--steps",
        "5",
        "--check",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "max |parameter difference| vs one process" in done.stdout


def test_init_from_env_explains_how_to_start():
    from zen.parallel import init_from_env

    with pytest.raises(RuntimeError, match="torchrun"):
        init_from_env()


def test_spawn_explains_that_the_function_must_be_importable():
    with pytest.raises(TypeError, match="importable module"):
        launch(lambda: 1, 1, start_method="spawn", timeout=20)


def _ring_on_gpu(n: int) -> float:
    device = torch.device("cuda", torch.cuda.current_device())
    x = torch.randn(
        n, device=device, generator=torch.Generator(device).manual_seed(dist.get_rank())
    )
    expected = x.clone()
    dist.all_reduce(expected)
    return (ring_all_reduce(x) - expected).abs().max().item()


@pytest.mark.gpu
def test_ring_all_reduce_with_nccl():
    world_size = min(2, torch.cuda.device_count())
    for err in launch(_ring_on_gpu, world_size, 1000, backend="nccl", timeout=120):
        assert err < 1e-4


# ------------------------------------------------------------------------- lab checks

from zen.course import parallel_checks as checks  # noqa: E402
from zen.parallel.data_parallel import all_reduce_gradients  # noqa: E402
from zen.parallel.tensor_parallel import copy_to_parallel, reduce_from_parallel  # noqa: E402


def _reference_dp_step(model, opt, x, y):
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    all_reduce_gradients(model)
    opt.step()
    return loss.item()


class _Column(nn.Module):
    """A student's column-parallel layer (the lab's solution): the check forbids zen's own."""

    def __init__(self, linear: nn.Linear, world_size: int, rank: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().chunk(world_size, dim=0)[rank].clone())
        self.bias = nn.Parameter(linear.bias.detach().chunk(world_size)[rank].clone())

    def forward(self, x):
        return F.linear(copy_to_parallel(x), self.weight, self.bias)


class _Row(nn.Module):
    """A student's row-parallel layer (the lab's solution)."""

    def __init__(self, linear: nn.Linear, world_size: int, rank: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().chunk(world_size, dim=1)[rank].clone())
        self.bias = nn.Parameter(linear.bias.detach().clone())

    def forward(self, x):
        return reduce_from_parallel(F.linear(x, self.weight)) + self.bias


def test_lab_checks_pass_on_the_reference_implementations():
    checks.check_ring_all_reduce(ring_all_reduce, world_sizes=(2, 3))
    checks.check_data_parallel_step(_reference_dp_step, world_sizes=(2,))
    checks.check_parallel_linear(_Column, "column", world_sizes=(2,))
    checks.check_parallel_linear(_Row, "row", world_sizes=(2,))


def test_lab_check_refuses_zens_own_layers():
    with pytest.raises(AssertionError, match="your own implementation"):
        checks.check_parallel_linear(ColumnParallelLinear, "column", world_sizes=(2,))


def _uses_a_collective(t):
    dist.all_reduce(t)
    return t


def _todo(t):
    raise NotImplementedError("TODO")


def _blocking_ring(t):
    p, r = dist.get_world_size(), dist.get_rank()
    dist.send(t, (r + 1) % p)  # every rank sends first: nobody receives
    dist.recv(t, (r - 1) % p)
    return t


def _no_division(model, opt, x, y):
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    for q in model.parameters():
        dist.all_reduce(q.grad)  # summed, not averaged
    opt.step()
    return loss.item()


class _ColumnWithoutF(_Column):
    def forward(self, x):
        return F.linear(x, self.weight, self.bias)  # input gradient never all-reduced


class _RowBiasOnEveryRank(_Row):
    def forward(self, x):
        return reduce_from_parallel(F.linear(x, self.weight, self.bias))  # bias summed p times


@pytest.mark.parametrize(
    "check, args, error, match",
    [
        (
            checks.check_ring_all_reduce,
            (_uses_a_collective,),
            AssertionError,
            "only point-to-point",
        ),
        (checks.check_ring_all_reduce, (_todo,), AssertionError, "not implemented yet"),
        (checks.check_data_parallel_step, (_no_division,), AssertionError, "divide by the number"),
        (
            checks.check_parallel_linear,
            (_ColumnWithoutF, "column"),
            AssertionError,
            "dist.all_reduce in backward",
        ),
        (checks.check_parallel_linear, (_RowBiasOnEveryRank, "row"), AssertionError, "output"),
    ],
)
def test_lab_checks_catch_typical_mistakes(check, args, error, match):
    with pytest.raises(error, match=match):
        check(*args, world_sizes=(2,))


def test_lab_check_reports_a_deadlock_instead_of_hanging():
    with pytest.raises(AssertionError, match="deadlock"):
        checks.check_ring_all_reduce(_blocking_ring, world_sizes=(2,), timeout=10)


def _collective_by_another_path(t):
    from torch.distributed.distributed_c10d import all_reduce

    all_reduce(t)
    return t


def _broadcast_to_everyone(
    t,
):  # right sum, but not a ring: every rank sends its whole tensor to every other
    p, r = dist.get_world_size(), dist.get_rank()
    parts = [torch.empty_like(t) for _ in range(p)]
    requests = [dist.isend(t.clone(), k) for k in range(p) if k != r]
    for k in range(p):
        if k != r:
            dist.recv(parts[k], k)
    for q in requests:
        q.wait()
    t += sum(parts[k] for k in range(p) if k != r)
    return t


def _wrong_peer(t):
    dist.send(t, dist.get_world_size())  # rank p does not exist
    return t


def _spins(t):
    if dist.get_rank() == 0:
        while True:
            pass
    dist.recv(t, 0)
    return t


def _helper_fails(t):
    return _helper(t)


def _helper(t):
    raise ValueError("bad chunk")


@pytest.mark.parametrize(
    "fn, match",
    [
        (_collective_by_another_path, "a collective was called"),
        (_broadcast_to_everyone, "sent to rank 2; in a ring it sends only to its right neighbour"),
        (
            _wrong_peer,
            r"rank 0 called dist.send with peer 3, "
            r"but the peers of rank 0 are the other ranks 0 … 2",
        ),
        (_spins, "rank 0 was still computing after 10 s: an endless loop?"),
        (_helper_fails, r"(?s)in _helper.*ValueError: bad chunk"),
    ],
    ids=[
        "collective-by-another-path",
        "not-a-ring",
        "invalid-rank",
        "endless-loop",
        "error-in-a-helper",
    ],
)
def test_ring_check_tells_shortcuts_and_failures_apart(fn, match):
    with pytest.raises(AssertionError, match=match) as info:
        checks.check_ring_all_reduce(fn, world_sizes=(3,), timeout=10)
    assert "launch.py" not in str(info.value) and "parallel_checks.py" not in str(
        info.value
    )  # zen's frames hidden


def test_a_cuda_initialised_kernel_is_reported_not_blamed_on_the_student(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.raises(AssertionError, match="already used the GPU") as info:
        checks.check_ring_all_reduce(_blocking_ring, world_sizes=(2,), timeout=10)
    assert "your code was not run" in str(info.value)


def test_ring_check_names_a_deadlock_and_who_waits():
    with pytest.raises(
        AssertionError, match=r"deadlocked: rank 0 waits for rank 1, rank 1 waits for rank 0"
    ):
        checks.check_ring_all_reduce(_blocking_ring, world_sizes=(2,), timeout=10)


def test_ring_check_calls_a_peer_closing_on_a_timed_out_rank_a_deadlock(monkeypatch):
    # Under load gloo's own timeout fires on one rank first; the launcher then reports the
    # other rank's "Connection closed by peer". Both ranks were waiting: still a deadlock.
    def fake_launch(fn, world_size, state, *args, timeout):
        state[0], state[1] = 2, 1  # rank 0 waits for rank 1, rank 1 for rank 0
        raise RuntimeError(
            "rank 0 of 2 failed:\nTraceback (most recent call last):\n"
            "RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:534] "
            "Connection closed by peer [127.0.0.1]:1234\n(ranks [1] failed too)"
        )

    monkeypatch.setattr(checks, "launch", fake_launch)
    with pytest.raises(
        AssertionError, match=r"deadlocked: rank 0 waits for rank 1, rank 1 waits for rank 0"
    ):
        checks.check_ring_all_reduce(_blocking_ring, world_sizes=(2,), timeout=10)


def test_ring_check_rejects_bad_input():
    with pytest.raises(ValueError, match="multiple of every world size"):
        checks.check_ring_all_reduce(ring_all_reduce, world_sizes=(5,), n=12)


def test_launch_starts_a_fresh_group_when_no_rank_could_join(monkeypatch):
    # gloo's mesh set-up can fail on a busy machine before fn runs anywhere: launch retries
    launcher = importlib.import_module("zen.parallel.launch")  # the package re-exports launch()

    calls = []
    run_group = launcher._run_group

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise launcher._JoinFailed("rank 0: Gloo connectFullMesh failed")
        return run_group(*args, **kwargs)

    monkeypatch.setattr(launcher, "_run_group", flaky)
    assert launch(dist.get_rank, 2) == [0, 1] and len(calls) == 2


def test_launch_gives_up_after_repeated_join_failures(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("no mesh today")

    monkeypatch.setattr(dist, "init_process_group", refuse)  # forked workers inherit it
    with pytest.raises(RuntimeError, match="could not join the process group"):
        launch(dist.get_rank, 2, timeout=20)


# ------------------------------------------------------- ring attention, overlap, α and β


def _ring_attention(q, k, v, causal: bool) -> torch.Tensor:
    r, p = dist.get_rank(), dist.get_world_size()
    return ring_attention(q.chunk(p, 2)[r], k.chunk(p, 2)[r], v.chunk(p, 2)[r], causal)


@pytest.mark.parametrize("p, causal", [(2, False), (3, True), (4, False), (4, True)])
def test_ring_attention_equals_full_attention(p, causal):
    g = torch.Generator().manual_seed(p)
    q, k, v = (torch.randn(2, 3, 4 * p, 8, generator=g) for _ in range(3))
    out = torch.cat(launch(_ring_attention, p, q, k, v, causal), dim=2)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def _ring_attention_bad() -> None:
    ring_attention(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))


def test_ring_attention_rejects_bad_shapes():
    with pytest.raises(RuntimeError, match=r"q must be \(batch, heads, seq, d_head\)"):
        launch(_ring_attention_bad, 2, timeout=20)
    with pytest.raises(ValueError, match="one shape"):
        ring_attention(torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 3, 4), torch.zeros(1, 1, 3, 4))


def _overlapped(steps: int) -> tuple[list[torch.Tensor], bool]:
    model, (x, y) = _model(), _data()
    r, p = dist.get_rank(), dist.get_world_size()
    sync = OverlappedAllReduce(model, bucket_numel=20)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    early = True
    for _ in range(steps):
        sync.zero_grad()
        F.cross_entropy(model(shard(x, r, p)), shard(y, r, p)).backward()
        early &= len(sync.launched) > 1 and sync.launched[0] < sync.backward_end
        sync.finish()
        opt.step()
    return [q.detach() for q in model.parameters()], early


def test_overlapped_all_reduce_equals_one_process_and_starts_during_backward():
    _, ref_params = _single_process(3, lambda ps: torch.optim.SGD(ps, lr=0.1))
    for params, early in launch(_overlapped, 3, 3):
        assert early  # the first bucket was sent before the last gradient was computed
        for a, b in zip(params, ref_params):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def _timings() -> tuple[list[float], list[float]]:
    return exchange_times([64, 4096], repeats=2), all_reduce_times([64, 4096], repeats=2)


def test_alpha_beta_timers_return_positive_times():
    for swap, reduce in launch(_timings, 2):
        assert len(swap) == len(reduce) == 2 and min(swap + reduce) > 0
