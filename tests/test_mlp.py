"""zen.mlp: the MLP builder that the GAN and VAE networks share."""

import pytest
import torch
from torch import nn

from zen.mlp import DeepMLP, mlp


def test_mlp_stacks_linear_layers_with_the_activation_between():
    net = mlp([3, 5, 7, 2], nn.Tanh)
    assert [type(m) for m in net] == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear]
    assert [(m.in_features, m.out_features) for m in net if isinstance(m, nn.Linear)] == [
        (3, 5),
        (5, 7),
        (7, 2),
    ]
    assert net(torch.randn(4, 3)).shape == (4, 2)


def test_mlp_rejects_bad_sizes():
    with pytest.raises(ValueError, match="at least an input and an output"):
        mlp([4])
    with pytest.raises(ValueError, match=r"sizes\[1\]"):
        mlp([4, 0, 2])


def test_deep_mlp_plain_and_residual_have_the_same_parameters():
    for norm in (None, "batch", "layer"):
        plain = DeepMLP(6, 8, 5, 3, norm=norm)
        residual = DeepMLP(6, 8, 5, 3, norm=norm, residual=True)
        assert sum(p.numel() for p in plain.parameters()) == sum(
            p.numel() for p in residual.parameters()
        )
        residual.load_state_dict(plain.state_dict())
        x = torch.randn(4, 6)
        assert plain(x).shape == residual(x).shape == (4, 3)
        assert not torch.allclose(plain(x), residual(x))


def test_deep_mlp_residual_adds_its_input():
    net = DeepMLP(3, 4, 2, 2, activation="gelu", residual=True)
    for linear in net.blocks:  # f = 0: each residual block is the identity
        nn.init.zeros_(linear.weight)
        nn.init.zeros_(linear.bias)
    x = torch.randn(5, 3)
    assert torch.allclose(net(x), net.out(torch.nn.functional.gelu(net.inp(x))))


def test_deep_mlp_rejects_bad_arguments():
    with pytest.raises(ValueError, match="norm must be one of"):
        DeepMLP(2, 4, 2, 2, norm="group")
    with pytest.raises(ValueError, match="n_layers must be a positive integer"):
        DeepMLP(2, 4, 0, 2)
