"""zen.serve: dynamic batching on a simulated clock, Poisson arrivals, latency percentiles."""

import numpy as np
import pytest
import torch

import zen
from zen import serve


def test_one_at_a_time_is_the_lindley_queue():
    arrivals = serve.poisson_arrivals(8.0, 300, zen.generator(0))
    result = serve.simulate_batching(arrivals, lambda b: 0.1, max_batch=1)
    finish, expected = 0.0, []
    for t in arrivals.tolist():  # a single server, first come first served
        finish = max(finish, t) + 0.1
        expected.append(finish - t)
    assert torch.allclose(result.latency, torch.tensor(expected, dtype=torch.float64))
    assert result.batch_size.eq(1).all()


def test_light_load_latency_is_the_service_time():
    arrivals = torch.arange(1, 21, dtype=torch.float64)  # one request a second
    result = serve.simulate_batching(arrivals, lambda b: 0.05 + 0.01 * b, max_batch=8)
    assert torch.allclose(result.latency, torch.full((20,), 0.06, dtype=torch.float64))


def test_max_wait_by_hand():
    arrivals = torch.tensor([0.0, 0.5], dtype=torch.float64)
    waits_long = serve.simulate_batching(arrivals, lambda b: 0.1, max_batch=2, max_wait=1.0)
    assert waits_long.batch_size.tolist() == [2]
    assert torch.allclose(waits_long.latency, torch.tensor([0.6, 0.1], dtype=torch.float64))
    waits_short = serve.simulate_batching(arrivals, lambda b: 0.1, max_batch=2, max_wait=0.2)
    assert waits_short.batch_size.tolist() == [1, 1]
    assert torch.allclose(waits_short.latency, torch.tensor([0.3, 0.1], dtype=torch.float64))


def test_batches_conserve_requests_under_load():
    arrivals = serve.poisson_arrivals(200.0, 2000, zen.generator(1))
    result = serve.simulate_batching(arrivals, lambda b: 0.01 + 0.001 * b, 16, max_wait=0.005)
    assert int(result.batch_size.sum()) == 2000 and int(result.batch_size.max()) <= 16
    assert (result.latency > 0).all()
    assert (result.batch_start[1:] >= result.batch_start[:-1]).all()
    one = serve.simulate_batching(arrivals, lambda b: 0.01 + 0.001 * b, 1)
    assert one.latency.mean() > 10 * result.latency.mean()  # overloaded without batching


def test_poisson_arrivals_rate_and_reproducibility():
    a = serve.poisson_arrivals(50.0, 20000, zen.generator(2))
    assert torch.equal(a, serve.poisson_arrivals(50.0, 20000, zen.generator(2)))
    assert (a.diff() >= 0).all()
    assert abs(a.diff().mean().item() - 1 / 50) < 0.03 / 50


def test_percentiles_match_numpy():
    latency = torch.rand(501, generator=zen.generator(3), dtype=torch.float64)
    got = serve.latency_percentiles(latency)
    for p, v in got.items():
        assert v == pytest.approx(np.percentile(latency.numpy(), p))


def test_bad_input():
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="sorted"):
        serve.simulate_batching(t.flip(0), lambda b: 0.1, 2)
    with pytest.raises(ValueError, match="max_batch"):
        serve.simulate_batching(t, lambda b: 0.1, 0)
    with pytest.raises(ValueError, match="max_wait"):
        serve.simulate_batching(t, lambda b: 0.1, 2, max_wait=-1.0)
    with pytest.raises(ValueError, match="empty"):
        serve.simulate_batching(t[:0], lambda b: 0.1, 2)
    with pytest.raises(TypeError, match="floating"):
        serve.simulate_batching(torch.arange(3), lambda b: 0.1, 2)
    with pytest.raises(ValueError, match="rate"):
        serve.poisson_arrivals(0.0, 10)
    with pytest.raises(ValueError, match="percentile"):
        serve.latency_percentiles(t, (50, 120))
