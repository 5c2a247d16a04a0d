"""Reference code of the backpropagation chapter.

The hand-written backward pass equals autograd and finite differences.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zen.backprop import ACTIVATIONS, TwoLayerMLP, bce_with_logits, softmax_cross_entropy


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backward_matches_autograd(activation, device):
    g = torch.Generator().manual_seed(0)
    net = TwoLayerMLP(
        7, 11, 5, activation=activation, generator=g, dtype=torch.float64, device=device
    )
    x = torch.randn(13, 7, generator=g, dtype=torch.float64).to(device)
    y = torch.randint(0, 5, (13,), generator=g).to(device)
    loss, grads = net.loss_and_grads(x, y)
    leaves = {k: v.clone().requires_grad_(True) for k, v in net.params.items()}
    act = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[activation]
    ref = F.cross_entropy(act(x @ leaves["W1"] + leaves["b1"]) @ leaves["W2"] + leaves["b2"], y)
    ref.backward()
    assert torch.allclose(loss, ref)
    for name, leaf in leaves.items():
        assert grads[name].shape == leaf.shape
        assert torch.allclose(grads[name], leaf.grad, atol=1e-12), name


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    logits = torch.tensor([[1000.0, 0.0, -1000.0]])
    loss, grad = softmax_cross_entropy(logits, torch.tensor([1]))
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert torch.allclose(loss, F.cross_entropy(logits, torch.tensor([1])))


def test_bce_gradient_is_sigmoid_minus_target():
    z = torch.randn(50, dtype=torch.float64, requires_grad=True)
    y = (torch.rand(50, dtype=torch.float64) > 0.5).double()
    loss, dz = bce_with_logits(z.detach(), y)
    F.binary_cross_entropy_with_logits(z, y).backward()
    assert torch.allclose(loss, F.binary_cross_entropy_with_logits(z.detach(), y))
    assert torch.allclose(dz, z.grad)


def test_sgd_step_lowers_the_loss():
    g = torch.Generator().manual_seed(1)
    net = TwoLayerMLP(4, 8, 3, generator=g)
    x, y = torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g)
    before, grads = net.loss_and_grads(x, y)
    net.sgd_step(grads, lr=0.1)
    after, _ = net.loss_and_grads(x, y)
    assert after < before


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="activation must be one of"):
        TwoLayerMLP(2, 2, 2, activation="swish")
    with pytest.raises(ValueError, match="d_hidden must be a positive integer"):
        TwoLayerMLP(2, 0, 2)
    net = TwoLayerMLP(4, 3, 2)
    with pytest.raises(ValueError, match="x must have 4 features"):
        net.forward(torch.randn(5, 3))
    with pytest.raises(ValueError, match="logits must be 2-D"):
        softmax_cross_entropy(torch.randn(3), torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 1\]"):
        softmax_cross_entropy(torch.randn(2, 2), torch.tensor([0, 5]))
    with pytest.raises(TypeError, match="integer class labels"):
        softmax_cross_entropy(torch.randn(2, 2), torch.tensor([0.0, 1.0]))
