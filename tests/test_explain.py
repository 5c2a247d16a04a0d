"""Reference code of the interpretability chapter, checked against Captum.

Saliency, gradient × input, integrated gradients (left/right/middle Riemann sums; Captum's
trapezoid weights sum to 1 − 1/steps, ours to 1), SmoothGrad with the same noise, occlusion,
and kernel SHAP equal Captum's; kernel SHAP over every coalition equals exact Shapley values;
completeness holds; attention rollout composes layers; bad inputs get clear errors.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zen import explain
from zen.explain.perturbation import _spread

captum_attr = pytest.importorskip("captum.attr")
pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")


def _model(device, d_in=(2, 6, 6), classes=3, seed=0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(d_in[0], 4, 3, padding=1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(4 * d_in[1] * d_in[2], 8),
        nn.Softplus(),
        nn.Linear(8, classes),
    )
    return net.double().to(device).eval()


def _x(device, batch=3, shape=(2, 6, 6), seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch,) + shape, generator=g, dtype=torch.float64).to(device)


def test_saliency_and_gradient_x_input_match_captum(device):
    net, x, t = _model(device), _x(device), torch.tensor([0, 2, 1], device=device)
    for absolute in (True, False):
        ref = captum_attr.Saliency(net).attribute(x, target=t, abs=absolute)
        torch.testing.assert_close(explain.saliency(net, x, t, absolute=absolute), ref)
    ref = captum_attr.InputXGradient(net).attribute(x, target=t)
    torch.testing.assert_close(explain.gradient_x_input(net, x, t), ref)


@pytest.mark.parametrize("method", ["left", "right", "middle"])
def test_integrated_gradients_matches_captum(device, method):
    net, x = _model(device), _x(device)
    base = _x(device, batch=1, seed=5)[0] * 0.1
    ref, ref_delta = captum_attr.IntegratedGradients(net).attribute(
        x,
        base.expand_as(x),
        target=1,
        n_steps=16,
        method=f"riemann_{method}",
        return_convergence_delta=True,
    )
    attr, delta = explain.integrated_gradients(net, x, base, 1, 16, method, return_delta=True)
    torch.testing.assert_close(attr, ref)
    torch.testing.assert_close(delta, ref_delta)


def test_captum_trapezoid_weights_sum_to_one_minus_one_over_steps(device):
    """Captum's ``riemann_trapezoid`` uses points 0..1 but weights 1/n: ours × (n−1)/n."""
    net, x, n = _model(device), _x(device), 10
    ref = captum_attr.IntegratedGradients(net).attribute(
        x, target=0, n_steps=n, method="riemann_trapezoid"
    )
    attr = explain.integrated_gradients(net, x, target=0, steps=n)
    torch.testing.assert_close(attr * (n - 1) / n, ref)


def test_completeness_gap_shrinks_with_steps(device):
    net, x = _model(device), _x(device)
    gaps = [
        explain.integrated_gradients(net, x, 0.0, 2, s, return_delta=True)[1].abs().max().item()
        for s in (4, 16, 64)
    ]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-3, gaps


def test_integrated_gradients_exact_for_a_linear_model(device):
    torch.manual_seed(0)
    lin = nn.Linear(5, 2).double().to(device)
    x = _x(device, 4, (5,))
    attr = explain.integrated_gradients(lin, x, target=1, steps=2)
    torch.testing.assert_close(attr, x * lin.weight[1].detach())
    torch.testing.assert_close(attr, explain.gradient_x_input(lin, x, 1))


def test_smoothgrad_matches_captum_noise_tunnel(device):
    net, x, n, sigma = _model(device), _x(device), 6, 0.3
    torch.manual_seed(123)
    ref = captum_attr.NoiseTunnel(captum_attr.Saliency(net)).attribute(
        x, nt_type="smoothgrad", nt_samples=n, stdevs=sigma, target=2, abs=False
    )
    torch.manual_seed(123)  # Captum's draw: N(0, σ) for the inputs repeated example by example
    noise = torch.normal(
        0, torch.tensor(sigma, device=device).repeat((x.shape[0] * n,) + x.shape[1:])
    )
    got = explain.smoothgrad(net, x, 2, n, sigma, noise=noise.view((x.shape[0], n) + x.shape[1:]))
    torch.testing.assert_close(got, ref)
    drawn = explain.smoothgrad(net, x, 2, n, sigma, generator=torch.Generator().manual_seed(0))
    assert drawn.shape == x.shape and not torch.allclose(drawn, got)


@pytest.mark.parametrize("window,stride", [((1, 2, 2), (1, 2, 2)), ((2, 3, 3), (1, 2, 2))])
def test_occlusion_matches_captum(device, window, stride):
    net, x = _model(device), _x(device)
    ref = captum_attr.Occlusion(net).attribute(
        x, sliding_window_shapes=window, strides=stride, target=1, baselines=0.5
    )
    got = explain.occlusion(net, x, window, stride, target=1, baseline=0.5)
    torch.testing.assert_close(got, ref.double(), atol=1e-6, rtol=1e-5)  # Captum sums in float32


def test_kernel_shap_enumerated_equals_exact_shapley(device):
    net, x = _model(device), _x(device)
    mask = torch.arange(6).repeat_interleave(6).view(6, 6).expand(2, 6, 6).contiguous()  # rows
    exact = explain.shapley_values(net, x, 0.0, 1, mask)
    kernel = explain.kernel_shap(net, x, 0.0, 1, mask)
    torch.testing.assert_close(kernel, exact)
    gap = explain.output(net, x, 1) - explain.output(net, torch.zeros_like(x), 1)
    torch.testing.assert_close(exact.sum(1), gap.detach())  # efficiency
    sampled = explain.kernel_shap(
        net, x, 0.0, 1, mask, n_samples=2000, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(sampled.sum(1), gap.detach())
    assert (sampled - exact).abs().max() < 0.1 * exact.abs().max()


def test_kernel_shap_matches_captum_on_a_linear_model():
    torch.manual_seed(0)
    lin = nn.Linear(4, 1).double()
    x = _x("cpu", 2, (4,))
    ref = torch.cat(
        [
            captum_attr.KernelShap(lin).attribute(x[i : i + 1], baselines=0.0, n_samples=200)
            for i in range(2)
        ]
    )
    exact = explain.shapley_values(lin, x)
    torch.testing.assert_close(exact, x * lin.weight[0].detach())
    torch.testing.assert_close(explain.kernel_shap(lin, x), ref.double(), atol=1e-4, rtol=1e-4)
    assert _spread(exact, x, None).shape == x.shape


def test_attention_rollout(device):
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 2, 4, 5, 5, generator=g).softmax(-1).to(device)
    roll = explain.attention_rollout(maps)
    torch.testing.assert_close(roll.sum(-1), torch.ones(2, 5, device=device))
    eye = torch.eye(5, device=device)
    a = [0.5 * m.mean(1) + 0.5 * eye for m in maps]
    torch.testing.assert_close(roll, a[2] @ a[1] @ a[0])
    torch.testing.assert_close(explain.attention_rollout(maps[:1], residual=False), maps[0].mean(1))


def test_bad_input(device):
    net, x = _model(device), _x(device)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        explain.integrated_gradients(net, x, target=0, steps=0)
    with pytest.raises(ValueError, match="trapezoid rule needs steps >= 2"):
        explain.integrated_gradients(net, x, target=0, steps=1)
    with pytest.raises(ValueError, match="method must be one of"):
        explain.integrated_gradients(net, x, target=0, method="simpson")
    with pytest.raises(ValueError, match="baseline must have the input's shape"):
        explain.integrated_gradients(net, x, torch.zeros(3, 6, 6, device=device), target=0)
    with pytest.raises(ValueError, match="pass a target class"):
        explain.saliency(net, x)
    with pytest.raises(ValueError, match=r"target must lie in \[0, 3\)"):
        explain.saliency(net, x, 3)
    with pytest.raises(ValueError, match="x must have at least 2 dims"):
        explain.saliency(net, torch.zeros(6, device=device))
    with pytest.raises(TypeError, match="floating-point"):
        explain.saliency(net, x.long())
    with pytest.raises(ValueError, match="one entry per feature axis"):
        explain.occlusion(net, x, (2, 2), target=0)
    with pytest.raises(ValueError, match="does not fit"):
        explain.occlusion(net, x, (1, 7, 7), target=0)
    with pytest.raises(ValueError, match="noise must be"):
        explain.smoothgrad(net, x, 0, 4, noise=torch.zeros(3, 5, 2, 6, 6, device=device))
    with pytest.raises(ValueError, match="group the features"):
        explain.shapley_values(net, x, target=0)
    with pytest.raises(ValueError, match="number its groups"):
        explain.shapley_values(net, x, target=0, feature_mask=torch.full((2, 6, 6), 3))
    with pytest.raises(ValueError, match="maps must be 5-D"):
        explain.attention_rollout(torch.rand(2, 4, 5, 5))
