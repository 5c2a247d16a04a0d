"""Reference code of the optimisation chapter: closed form == gradient descent == autograd."""

from __future__ import annotations

import pytest
import torch

from zen import linreg
from zen.data import make_linear_regression


@pytest.fixture
def xy():
    x, y = make_linear_regression(n=200, weights=(1.5, -0.5, 2.0), bias=0.3, noise=0.1, seed=3)
    return x.double(), y.double()


def test_closed_form_matches_numpy_lstsq(xy):
    x, y = xy
    w, b = linreg.closed_form(x, y)
    import numpy as np

    design = np.c_[x.numpy(), np.ones(len(x))]
    ref = np.linalg.lstsq(design, y.numpy(), rcond=None)[0]
    assert torch.allclose(torch.cat([w, b.reshape(1)]), torch.from_numpy(ref))


def test_mse_grad_matches_autograd(xy, device):
    x, y = (t.to(device) for t in xy)
    w = torch.randn(3, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn((), dtype=torch.float64, device=device, requires_grad=True)
    linreg.mse(linreg.predict(x, w, b), y).backward()
    gw, gb = linreg.mse_grad(x, y, w.detach(), b.detach())
    assert torch.allclose(gw, w.grad) and torch.allclose(gb, b.grad)


def test_gradient_descent_reaches_closed_form(xy):
    x, y = xy
    lr = 0.9 * linreg.max_stable_lr(x)
    run = linreg.gradient_descent(x, y, lr=lr, steps=5000)
    w, b = linreg.closed_form(x, y)
    assert torch.allclose(run.w, w, atol=1e-5) and torch.allclose(run.b, b, atol=1e-5)
    assert run.path.shape == (5001, 4) and run.losses.shape == (5001,)
    assert not run.diverged


def test_learning_rate_threshold_is_sharp(xy):
    x, y = xy
    lr_max = linreg.max_stable_lr(x)
    assert not linreg.gradient_descent(x, y, lr=0.99 * lr_max, steps=3000).diverged
    assert linreg.gradient_descent(x, y, lr=1.01 * lr_max, steps=3000).diverged


def test_bad_inputs_are_rejected(xy):
    x, y = xy
    with pytest.raises(ValueError, match=r"x must be 2-D"):
        linreg.closed_form(x[:, 0], y)
    with pytest.raises(ValueError, match="same size along dim 0"):
        linreg.closed_form(x, y[:-1])
    with pytest.raises(TypeError, match="floating-point"):
        linreg.closed_form(x.long(), y)
    with pytest.raises(ValueError, match="lr must be positive"):
        linreg.gradient_descent(x, y, lr=0.0, steps=10)
    with pytest.raises(ValueError, match="steps"):
        linreg.gradient_descent(x, y, lr=0.1, steps=0)
    with pytest.raises(ValueError, match="same shape"):
        linreg.mse(y, y[:-1])
