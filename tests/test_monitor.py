"""zen.monitor: calibration error, temperature scaling, KS and PSI drift statistics."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import zen
from zen import monitor


def test_ece_by_hand():
    # confidences 0.9, 0.9 (one right), 0.6 (right), 0.3 (wrong; 3 classes) in 10 bins
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.2, 0.6, 0.2], [0.3, 0.35, 0.35]])
    labels = torch.tensor([0, 1, 1, 0])
    # bin (0.8, 0.9]: conf 0.9, acc 0.5; bin (0.5, 0.6]: conf 0.6, acc 1; bin (0.3, 0.4]: 0.35, 0
    expected = 2 / 4 * 0.4 + 1 / 4 * 0.4 + 1 / 4 * 0.35
    assert monitor.expected_calibration_error(probs, labels, 10) == pytest.approx(expected)


def test_reliability_bins_match_sklearn_and_a_loop(device):
    calibration_curve = pytest.importorskip("sklearn.calibration").calibration_curve
    gen = zen.generator(0)
    conf = torch.rand(500, generator=gen, dtype=torch.float64).to(device)
    correct = (torch.rand(500, generator=gen, dtype=torch.float64).to(device) < conf).long()
    mean_conf, acc, count = monitor.reliability_bins(conf, correct, 8)
    true_sk, pred_sk = calibration_curve(correct.cpu().numpy(), conf.cpu().numpy(), n_bins=8)
    kept = count.cpu() > 0
    np.testing.assert_allclose(acc.cpu()[kept].numpy(), true_sk)
    np.testing.assert_allclose(mean_conf.cpu()[kept].numpy(), pred_sk)
    for m in range(8):  # a direct loop over right-closed bins
        lo, hi = m / 8, (m + 1) / 8
        inside = [(c, k) for c, k in zip(conf.tolist(), correct.tolist()) if lo < c <= hi]
        assert count[m] == len(inside)


def test_temperature_scaling_lowers_nll_and_keeps_accuracy():
    gen = zen.generator(1)
    labels = torch.randint(0, 4, (800,), generator=gen)
    logits = torch.randn(800, 4, generator=gen) + 1.5 * F.one_hot(labels, 4)
    over = 4 * logits  # an over-confident model
    t = monitor.fit_temperature(over, labels)
    assert 2.5 < t < 6
    assert F.cross_entropy(over / t, labels) < F.cross_entropy(over, labels) - 0.1
    grid = torch.linspace(0.5, 10, 400)
    best = grid[torch.stack([F.cross_entropy(over / g, labels) for g in grid]).argmin()]
    assert t == pytest.approx(best.item(), rel=0.02)
    ece_before = monitor.expected_calibration_error(over.softmax(1), labels)
    ece_after = monitor.expected_calibration_error((over / t).softmax(1), labels)
    assert ece_after < ece_before


def test_ks_equals_scipy():
    stats = pytest.importorskip("scipy.stats")
    for seed in range(5):
        gen = zen.generator(seed)
        a = torch.randn(50 + 7 * seed, generator=gen, dtype=torch.float64)
        b = torch.randn(80, generator=gen, dtype=torch.float64) * 1.3 + 0.2
        b[:5] = a[:5]  # ties across the samples
        ref = stats.ks_2samp(a.numpy(), b.numpy()).statistic
        assert monitor.ks_statistic(a, b) == pytest.approx(ref, abs=1e-12)


def test_ks_critical_value_matches_kolmogorov_distribution():
    stats = pytest.importorskip("scipy.stats")
    n, m = 400, 300
    c = stats.kstwobign.isf(0.05)  # the limiting distribution of sqrt(nm/(n+m)) D
    assert monitor.ks_critical_value(n, m, 0.05) == pytest.approx(
        c * ((n + m) / (n * m)) ** 0.5, rel=1e-3
    )


def test_psi_zero_for_identical_and_grows_with_shift():
    x = torch.randn(1000, generator=zen.generator(2), dtype=torch.float64)
    assert monitor.psi(x, x) == pytest.approx(0.0, abs=1e-12)
    assert monitor.psi(x, x + 0.2) < monitor.psi(x, x + 1.0)


def test_windowed_drift_finds_the_change():
    gen = zen.generator(3)
    stream = torch.cat([torch.randn(300, generator=gen), torch.randn(300, generator=gen) + 2])
    reference = torch.randn(300, generator=gen)
    ends, stats = monitor.windowed_drift(stream, reference, window=50, stride=10)
    assert ends[0] == 50 and ends[-1] == 600
    assert stats[ends <= 300].max() < monitor.ks_critical_value(300, 50, 0.001)
    alert = monitor.first_alert(ends, stats, monitor.ks_critical_value(300, 50, 0.001))
    assert 300 < alert <= 350
    psi_ends, psi_stats = monitor.windowed_drift(stream, reference, 50, 10, method="psi")
    assert torch.equal(psi_ends, ends) and psi_stats[-1] > 1
    assert monitor.first_alert(ends, stats, 10.0) == -1


def test_bad_input():
    x = torch.rand(10, dtype=torch.float64)
    with pytest.raises(TypeError, match="torch.Tensor"):
        monitor.ks_statistic([0.1, 0.2], x)
    with pytest.raises(ValueError, match="1-D"):
        monitor.psi(x.view(2, 5), x)
    with pytest.raises(ValueError, match="empty"):
        monitor.ks_statistic(x, x[:0])
    with pytest.raises(TypeError, match="floating"):
        monitor.ks_statistic(torch.arange(5), x)
    with pytest.raises(ValueError, match="probabilities"):
        monitor.expected_calibration_error(torch.ones(3, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer class ids"):
        monitor.expected_calibration_error(torch.full((3, 2), 0.5), torch.zeros(3))
    with pytest.raises(ValueError, match="same size"):
        monitor.fit_temperature(torch.randn(4, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        monitor.reliability_bins(x + 1, x > 0.5)
    with pytest.raises(ValueError, match="alpha"):
        monitor.ks_critical_value(10, 10, 1.5)
    with pytest.raises(ValueError, match="longer than the stream"):
        monitor.windowed_drift(x, x, window=20)
    with pytest.raises(ValueError, match="method"):
        monitor.windowed_drift(x, x, window=5, method="chi2")
