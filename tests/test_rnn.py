"""Reference code of the recurrence chapter: zen.rnn equals nn.RNN, nn.LSTM and nn.GRU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zen.rnn import GRU, LSTM, RNN, gru_cell, lstm_cell, rnn_cell

PAIRS = [(RNN, nn.RNN), (LSTM, nn.LSTM), (GRU, nn.GRU)]


def _flat(out):
    """``output, h_n`` or ``output, (h_n, c_n)`` as a flat list of tensors."""
    first, states = out
    return [first, *(states if isinstance(states, tuple) else (states,))]


def _pair(zen_cls, torch_cls, g, use_builtin=False, bias=True, device="cpu"):
    n_in, H = (int(v) for v in torch.randint(1, 9, (2,), generator=g))
    ref = torch_cls(n_in, H, bias=bias, batch_first=True).double().to(device)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)
    ours = zen_cls(n_in, H, bias=bias, use_builtin=use_builtin).double().to(device)
    return ours.load_torch_weights(ref), ref, n_in, H


@pytest.mark.parametrize("use_builtin", [False, True])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("zen_cls,torch_cls", PAIRS)
def test_equals_pytorch_forward_and_backward(zen_cls, torch_cls, seed, use_builtin, device):
    g = torch.Generator().manual_seed(seed)
    ours, ref, n_in, H = _pair(zen_cls, torch_cls, g, use_builtin, bias=seed != 3, device=device)
    B, T = (int(v) for v in torch.randint(1, 7, (2,), generator=g))
    x = torch.randn(B, T, n_in, generator=g, dtype=torch.float64).to(device)
    states = [torch.randn(1, B, H, generator=g, dtype=torch.float64).to(device) for _ in "hc"]
    hx = tuple(states) if zen_cls is LSTM else states[0]
    for args in ((x,), (x, hx)):  # zero and given initial states
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        got, want = _flat(ours(xa, *args[1:])), _flat(ref(xb, *args[1:]))
        assert [t.shape for t in got] == [t.shape for t in want]
        for a, b in zip(got, want):
            assert torch.allclose(a, b, atol=1e-12)
        weights = [torch.randn(t.shape, generator=g, dtype=torch.float64).to(device) for t in want]
        sum((a * w).sum() for a, w in zip(got, weights)).backward()
        sum((b * w).sum() for b, w in zip(want, weights)).backward()
        assert torch.allclose(xa.grad, xb.grad, atol=1e-10)
        for name, p in ours.named_parameters():
            assert torch.allclose(p.grad, getattr(ref, f"{name}_l0").grad, atol=1e-10), name
        ours.zero_grad(), ref.zero_grad()


@pytest.mark.parametrize("zen_cls,torch_cls", PAIRS)
def test_unbatched_input_like_pytorch(zen_cls, torch_cls):
    g = torch.Generator().manual_seed(7)
    ours, ref, n_in, H = _pair(zen_cls, torch_cls, g)
    x = torch.randn(5, n_in, generator=g, dtype=torch.float64)
    h0 = torch.randn(1, H, generator=g, dtype=torch.float64)
    for args in ((x,), (x, (h0, h0 * 2) if zen_cls is LSTM else h0)):
        got, want = _flat(ours(*args)), _flat(ref(*args))
        for a, b in zip(got, want):
            assert a.shape == b.shape and torch.allclose(a, b, atol=1e-12)


def test_initialisation_is_pytorchs_uniform():
    lstm = LSTM(3, 16)
    assert lstm.weight_ih.shape == (64, 3) and lstm.weight_hh.shape == (64, 16)
    assert sum(p.numel() for p in lstm.parameters()) == sum(
        p.numel() for p in nn.LSTM(3, 16).parameters()
    )
    bound = 1 / 16**0.5
    for p in lstm.parameters():
        assert p.abs().max() <= bound and p.std() > bound / 3


def test_cells_equal_pytorch_cells():
    g = torch.Generator().manual_seed(3)
    x, h, c = (torch.randn(4, n, generator=g, dtype=torch.float64) for n in (3, 5, 5))
    for cell, ref_cls in ((rnn_cell, nn.RNNCell), (lstm_cell, nn.LSTMCell), (gru_cell, nn.GRUCell)):
        ref = ref_cls(3, 5).double()
        ps = [ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh]
        if cell is lstm_cell:
            got, want = cell(x, h, c, *ps), ref(x, (h, c))
            assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(got, want))
        else:
            assert torch.allclose(cell(x, h, *ps), ref(x, h), atol=1e-12)


def test_bad_inputs_raise_clear_errors():
    lstm = LSTM(3, 4)
    with pytest.raises(ValueError, match="input must be 2-D or 3-D"):
        lstm(torch.randn(2, 3, 4, 3))
    with pytest.raises(ValueError, match="input must have 3 features"):
        lstm(torch.randn(2, 5, 4))
    with pytest.raises(TypeError, match="floating-point"):
        lstm(torch.ones(2, 5, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"):
        lstm([[0.0, 1.0, 2.0]])
    with pytest.raises(ValueError, match=r"c_0 must have shape \(1, 2, 4\)"):
        lstm(torch.randn(2, 5, 3), (torch.zeros(1, 2, 4), torch.zeros(2, 4)))
    with pytest.raises(TypeError, match="tuple"):
        lstm(torch.randn(2, 5, 3), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match=r"h_0 must have shape \(1, 4\)"):
        RNN(3, 4)(torch.randn(5, 3), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
        GRU(3, 0)


def test_load_torch_weights_rejects_other_layers():
    with pytest.raises(TypeError, match="expected LSTM, got GRU"):
        LSTM(3, 4).load_torch_weights(nn.GRU(3, 4))
    with pytest.raises(ValueError, match="size mismatch"):
        LSTM(3, 4).load_torch_weights(nn.LSTM(3, 5))
    with pytest.raises(ValueError, match="one layer, one direction"):
        LSTM(3, 4).load_torch_weights(nn.LSTM(3, 4, num_layers=2))
    with pytest.raises(ValueError, match="one layer, one direction"):
        GRU(3, 4).load_torch_weights(nn.GRU(3, 4, bidirectional=True))
    with pytest.raises(ValueError, match="one layer, one direction"):
        LSTM(3, 4).load_torch_weights(nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(ValueError, match="tanh"):
        RNN(3, 4).load_torch_weights(nn.RNN(3, 4, nonlinearity="relu"))
