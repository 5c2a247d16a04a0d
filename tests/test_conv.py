"""Reference code of the convolutions chapter.

im2col + matmul equals ``F.conv2d`` in forward and gradients; the pools equal PyTorch's;
the shape formula and the receptive field formula hold; bad inputs get clear errors.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from zen import conv


def _random_case(g: torch.Generator) -> dict:
    """A random convolution: shapes, stride, padding and dilation that fit together."""

    def pick(a: int, b: int) -> int:
        return int(torch.randint(a, b + 1, (1,), generator=g))

    kh, kw = pick(1, 4), pick(1, 4)
    sh, sw, dh, dw = pick(1, 3), pick(1, 3), pick(1, 2), pick(1, 2)
    ph, pw = pick(0, kh // 2 + 1), pick(0, kw // 2 + 1)
    h = max(pick(1, 9), dh * (kh - 1) + 1 - 2 * ph)
    w = max(pick(1, 9), dw * (kw - 1) + 1 - 2 * pw)
    return dict(
        x_shape=(pick(1, 3), pick(1, 4), h, w),
        c_out=pick(1, 5),
        kernel=(kh, kw),
        stride=(sh, sw),
        padding=(ph, pw),
        dilation=(dh, dw),
    )


@pytest.mark.parametrize("seed", range(20))
def test_conv2d_equals_F_conv2d_forward_and_backward(seed, device):
    g = torch.Generator().manual_seed(seed)
    case = _random_case(g)
    x = torch.randn(case["x_shape"], generator=g, dtype=torch.float64).to(device)
    weight = torch.randn(
        case["c_out"], case["x_shape"][1], *case["kernel"], generator=g, dtype=torch.float64
    ).to(device)
    bias = torch.randn(case["c_out"], generator=g, dtype=torch.float64).to(device)
    kw = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"])
    grads = []
    for fn in (conv.conv2d, F.conv2d):
        leaves = [t.clone().requires_grad_(True) for t in (x, weight, bias)]
        out = fn(*leaves, **kw)
        out.backward(torch.ones_like(out) + out.detach())  # a non-uniform upstream gradient
        grads.append((out.detach(), *(t.grad for t in leaves)))
    for ours, ref in zip(*grads):
        assert ours.shape == ref.shape
        assert torch.allclose(ours, ref, atol=1e-10)
    builtin = conv.conv2d(x, weight, bias, use_builtin=True, **kw)
    assert torch.allclose(builtin, grads[1][0])


def test_conv2d_defaults_and_no_bias(device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 6, generator=g).to(device)
    weight = torch.randn(4, 3, 3, 3, generator=g).to(device)
    assert torch.allclose(conv.conv2d(x, weight), F.conv2d(x, weight), atol=1e-5)
    assert torch.allclose(
        conv.conv2d(x, weight, stride=2, padding=1),
        F.conv2d(x, weight, stride=2, padding=1),
        atol=1e-5,
    )


def test_conv2d_passes_gradcheck():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: conv.conv2d(*t, stride=(2, 1), padding=1), (x, w, b))


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"), [(2, None, 0), (3, 1, 1), ((2, 3), (1, 2), (1, 0)), (3, 2, 1)]
)
def test_pools_equal_pytorch(kernel, stride, padding, device):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 7, 8, generator=g, dtype=torch.float64).to(device)
    for ours, ref in ((conv.max_pool2d, F.max_pool2d), (conv.avg_pool2d, F.avg_pool2d)):
        a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        out_a, out_b = ours(a, kernel, stride, padding), ref(b, kernel, stride, padding)
        assert out_a.shape == out_b.shape
        assert torch.allclose(out_a, out_b)
        out_a.sum().backward()
        out_b.sum().backward()
        assert torch.allclose(a.grad, b.grad)


def test_max_pool_gradient_reaches_only_the_argmax():
    x = torch.randn(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    conv.max_pool2d(x, 2).sum().backward()
    assert int((x.grad != 0).sum()) == 9  # one input per 2×2 window, 9 windows


def test_output_size_matches_F_conv2d():
    for h, k, s, p, d in itertools.product(range(1, 9), range(1, 4), (1, 2, 3), (0, 1, 2), (1, 2)):
        n = conv.output_size(h, k, s, p, d)
        if h + 2 * p < d * (k - 1) + 1:
            assert n < 1
            continue
        out = F.conv2d(torch.zeros(1, 1, h, h), torch.zeros(1, 1, k, k), None, s, p, d)
        assert out.shape[-1] == n


def test_receptive_field_matches_autograd():
    layers = [(3, 1, 1), (3, 2, 1), (3, 1, 2), (2, 2, 1), (5, 1, 1)]  # (kernel, stride, dilation)
    x = torch.ones(1, 1, 64, 64, requires_grad=True)
    h = x
    for k, s, d in layers:
        h = conv.conv2d(h, torch.ones(1, 1, k, k), stride=s, dilation=d)
    h[0, 0, h.shape[2] // 2, h.shape[3] // 2].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero()
    measured = int(rows.max() - rows.min() + 1)
    assert measured == conv.receptive_field(*map(list, zip(*layers)))


def test_bad_inputs_are_rejected():
    x, w = torch.randn(2, 3, 5, 5), torch.randn(4, 3, 3, 3)
    with pytest.raises(ValueError, match="must have 3 channels"):
        conv.conv2d(torch.randn(2, 2, 5, 5), w)
    with pytest.raises(ValueError, match="must have 3 channels"):
        conv.conv2d(torch.randn(2, 2, 5, 5), w, use_builtin=True)
    with pytest.raises(ValueError, match="x must be 4-D"):
        conv.conv2d(torch.randn(3, 5, 5), w)
    with pytest.raises(ValueError, match="weight must be 4-D"):
        conv.conv2d(x, torch.randn(4, 3, 3))
    with pytest.raises(ValueError, match="no output position fits"):
        conv.conv2d(x, torch.randn(4, 3, 7, 3))
    with pytest.raises(ValueError, match="no output position fits"):
        conv.conv2d(x, w, dilation=3, use_builtin=True)
    with pytest.raises(ValueError, match="bias must have shape"):
        conv.conv2d(x, w, torch.randn(3))
    with pytest.raises(ValueError, match="stride must be an int >= 1"):
        conv.conv2d(x, w, stride=0)
    with pytest.raises(ValueError, match="padding must be an int >= 0"):
        conv.conv2d(x, w, padding=(1, -1))
    with pytest.raises(ValueError, match="padding must be at most half"):
        conv.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="no output position fits"):
        conv.avg_pool2d(x, 6)
    with pytest.raises(TypeError, match="torch.Tensor"):
        conv.max_pool2d(x.numpy(), 2)
    with pytest.raises(ValueError, match="one entry per layer"):
        conv.receptive_field([3, 3], [1])
