"""zen.mlp: the MLP builder that the GAN and VAE networks share."""

import pytest
import torch
from torch import nn

from zen.mlp import mlp


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
