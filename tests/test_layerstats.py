"""zen.layerstats: per-layer outputs, variances, gradient norms and dead units."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zen.layerstats import dead_units, layer_outputs, output_variances, weight_grad_norms


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3), nn.Tanh(), nn.Linear(3, 2))


def test_layer_outputs_are_the_intermediate_results_in_order(device):
    net, x = _net().to(device), torch.randn(4, 5, device=device)
    outs = layer_outputs(net, x)
    h1 = net[0](x)
    h2 = net[2](net[1](h1))
    assert [o.shape for o in outs] == [(4, 7), (4, 3), (4, 2)]
    for got, want in zip(outs, [h1, h2, net(x)]):
        assert torch.allclose(got, want) and not got.requires_grad
    relus = layer_outputs(net, x, kinds=(nn.ReLU,))
    assert len(relus) == 1 and torch.allclose(relus[0], h1.relu())
    assert all(not m._forward_hooks for m in net)  # the hooks are removed


def test_output_variances_equal_the_variance_of_each_output():
    net, x = _net(), torch.randn(16, 5)
    want = torch.stack([o.var() for o in layer_outputs(net, x)])
    assert torch.allclose(output_variances(net, x), want)


def test_weight_grad_norms_follow_module_order():
    net, x = _net(), torch.randn(16, 5)
    F.cross_entropy(net(x), torch.tensor([0, 1] * 8)).backward()
    want = torch.stack([net[i].weight.grad.norm() for i in (0, 2, 4)])
    assert torch.allclose(weight_grad_norms(net), want)


def test_dead_units_are_zero_for_every_row():
    h = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    assert dead_units(h).tolist() == [True, False, False]


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="has no layer of kind Conv2d"):
        layer_outputs(_net(), torch.randn(2, 5), kinds=(nn.Conv2d,))
    with pytest.raises(ValueError, match="call backward"):
        weight_grad_norms(_net())
    with pytest.raises(ValueError, match=r"h must be 2-D \(n, features\)"):
        dead_units(torch.zeros(3))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        layer_outputs(_net(), [[1.0] * 5])
