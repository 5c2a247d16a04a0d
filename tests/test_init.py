"""zen.init: the variance-law initialisers against torch.nn.init, and the gains they use."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zen.init import fans, gain, init_linear_, kaiming_normal_, variance_gain, xavier_normal_


@pytest.mark.parametrize("shape", [(7, 5), (6, 3, 2), (8, 4, 3, 3)])
def test_fans_match_torch(shape):
    w = torch.empty(shape)
    assert fans(w) == nn.init._calculate_fan_in_and_fan_out(w)


@pytest.mark.parametrize(
    "name, param", [("linear", None), ("relu", None), ("leaky_relu", 0.01), ("leaky_relu", 0.3)]
)
def test_closed_form_gains_equal_torch_calculate_gain(name, param):
    ours = gain(name) if param is None else gain(name, negative_slope=param)
    assert math.isclose(ours, nn.init.calculate_gain(name, param), rel_tol=1e-12)


SMOOTH = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": F.gelu, "silu": F.silu,
          "elu": F.elu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh")}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_quadrature_gain_equals_a_monte_carlo_estimate(name):
    z = torch.randn(2_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    measured = 1 / SMOOTH[name](z).pow(2).mean().sqrt().item()
    assert math.isclose(gain(name), measured, rel_tol=3e-3)
    assert gain(name) == variance_gain(SMOOTH[name])


def test_relu_quadrature_matches_the_closed_form():
    assert math.isclose(variance_gain(torch.relu), math.sqrt(2), rel_tol=1e-4)


@pytest.mark.parametrize("shape", [(64, 32), (16, 8, 3, 3)])
@pytest.mark.parametrize("nonlinearity", ["relu", "leaky_relu", "linear", "tanh"])
def test_kaiming_normal_draws_torchs_weights(shape, nonlinearity, device):
    g1 = torch.Generator(device=device).manual_seed(3)
    g2 = torch.Generator(device=device).manual_seed(3)
    ours = kaiming_normal_(torch.empty(shape, device=device), nonlinearity, generator=g1)
    torch_gain = {"tanh": 5 / 3}.get(nonlinearity)  # torch's tanh gain differs from ours
    ref = torch.empty(shape, device=device)
    if torch_gain is None:
        nn.init.kaiming_normal_(ref, a=0.01, nonlinearity=nonlinearity, generator=g2)
        assert torch.allclose(ours, ref, rtol=1e-6, atol=0)
    else:
        ref.normal_(0, gain("tanh") / math.sqrt(fans(ref)[0]), generator=g2)
        assert torch.equal(ours, ref)


@pytest.mark.parametrize("shape", [(64, 32), (16, 8, 3, 3)])
def test_xavier_normal_draws_torchs_weights(shape, device):
    g1 = torch.Generator(device=device).manual_seed(4)
    g2 = torch.Generator(device=device).manual_seed(4)
    ours = xavier_normal_(torch.empty(shape, device=device), gain=1.7, generator=g1)
    ref = nn.init.xavier_normal_(torch.empty(shape, device=device), gain=1.7, generator=g2)
    assert torch.equal(ours, ref)


def test_init_linear_sets_every_layer_and_zeroes_biases():
    net = nn.Sequential(nn.Linear(300, 200), nn.ReLU(), nn.Linear(200, 400))
    init_linear_(net, "kaiming", gain=math.sqrt(2), generator=torch.Generator().manual_seed(0))
    for layer, fan_in in [(net[0], 300), (net[2], 200)]:
        assert math.isclose(layer.weight.std().item(), math.sqrt(2 / fan_in), rel_tol=0.02)
        assert (layer.bias == 0).all()
    init_linear_(net, "xavier", generator=torch.Generator().manual_seed(0))
    assert math.isclose(net[2].weight.std().item(), math.sqrt(2 / 600), rel_tol=0.02)
    init_linear_(net, "normal", std=0.05, generator=torch.Generator().manual_seed(0))
    assert math.isclose(net[0].weight.std().item(), 0.05, rel_tol=0.02)


def test_kaiming_keeps_the_variance_of_a_deep_relu_stack():
    width, depth, g = 256, 20, torch.Generator().manual_seed(0)
    layers = [m for _ in range(depth) for m in (nn.ReLU(), nn.Linear(width, width))]
    net = init_linear_(nn.Sequential(*layers), "kaiming", gain=gain("relu"), generator=g)
    with torch.no_grad():
        out = net(torch.randn(512, width, generator=g))
    assert 0.25 < out.var().item() < 4


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        gain("softplus")
    with pytest.raises(ValueError, match="weight must have at least 2 dims"):
        kaiming_normal_(torch.empty(5))
    with pytest.raises(TypeError, match="floating-point"):
        kaiming_normal_(torch.empty(3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="scheme must be one of"):
        init_linear_(nn.Linear(2, 2), "orthogonal")
    with pytest.raises(ValueError, match="std is needed by scheme 'normal'"):
        init_linear_(nn.Linear(2, 2), "normal")
    with pytest.raises(ValueError, match="std is needed by scheme 'normal'"):
        init_linear_(nn.Linear(2, 2), "kaiming", std=0.1)
    with pytest.raises(ValueError, match="no nn.Linear"):
        init_linear_(nn.ReLU(), "kaiming")
    with pytest.raises(ValueError, match="must not vanish"):
        variance_gain(torch.zeros_like)
