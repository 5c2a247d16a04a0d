"""Recurrent networks: the Elman RNN, the LSTM and the GRU, one layer each.

A recurrent layer reads a sequence one step at a time and carries a state from step to step.
With ``x_t (B, I)`` the input at step ``t`` and PyTorch's weight layout (``W_i· (H, I)``,
``W_h· (H, H)``, row vectors, ``x W^T``)::

    RNN   h_t = tanh(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh)

    LSTM  [i, f, g, o] = split₄(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh)      (4H → 4 × H)
          c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g)          the cell: an additive memory
          h_t = σ(o) ⊙ tanh(c_t)

    GRU   [r_x, z_x, n_x] = split₃(x_t W_ihᵀ + b_ih), [r_h, z_h, n_h] = split₃(h_{t-1} W_hhᵀ + b_hh)
          r = σ(r_x + r_h),  z = σ(z_x + z_h),  n = tanh(n_x + r ⊙ n_h)
          h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

    x (B, T, I) ─ step t = 0 … T−1, each needing the state of the step before ─→ out (B, T, H)
                   (h, c) (B, H) ────────────────────────────────────────────→ h_n, c_n (1, B, H)

The classes take and return what ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` with
``batch_first=True`` and one layer do (``output, h_n`` or ``output, (h_n, c_n)``; the states
carry a leading layer axis of size 1; an unbatched ``(T, I)`` input is accepted), hold the
same parameters under the same names without the ``_l0`` suffix, start from the same
initialisation ``U(-1/√H, 1/√H)``, and copy a PyTorch layer's weights with
``load_torch_weights``. ``use_builtin=True`` runs PyTorch's fused loop instead of the
readable Python one; the two agree (tests/test_rnn.py).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from zen import validate

__all__ = ["rnn_cell", "lstm_cell", "gru_cell", "RNN", "LSTM", "GRU"]


def rnn_cell(
    x: torch.Tensor,
    h: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor | None = None,
    bias_hh: torch.Tensor | None = None,
) -> torch.Tensor:
    """One Elman step: ``x (B, I)``, ``h (B, H)`` → the next ``h (B, H)``."""
    z = x @ weight_ih.T + h @ weight_hh.T  # (B, H)
    if bias_ih is not None:
        z = z + bias_ih + bias_hh
    return torch.tanh(z)


def lstm_cell(
    x: torch.Tensor,
    h: torch.Tensor,
    c: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor | None = None,
    bias_hh: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step: ``x (B, I)``, ``h, c (B, H)`` → ``(h, c)``; gates in PyTorch's order i, f, g,
    o."""
    z = x @ weight_ih.T + h @ weight_hh.T  # (B, 4H)
    if bias_ih is not None:
        z = z + bias_ih + bias_hh
    i, f, g, o = z.chunk(4, dim=-1)  # each (B, H)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c


def gru_cell(
    x: torch.Tensor,
    h: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor | None = None,
    bias_hh: torch.Tensor | None = None,
) -> torch.Tensor:
    """One GRU step: ``x (B, I)``, ``h (B, H)`` → the next ``h`` (gates ordered r, z, n)."""
    gx, gh = x @ weight_ih.T, h @ weight_hh.T  # (B, 3H) each
    if bias_ih is not None:
        gx, gh = gx + bias_ih, gh + bias_hh
    r_x, z_x, n_x = gx.chunk(3, dim=-1)
    r_h, z_h, n_h = gh.chunk(3, dim=-1)
    r, z = torch.sigmoid(r_x + r_h), torch.sigmoid(z_x + z_h)
    n = torch.tanh(n_x + r * n_h)  # the reset gate scales the recurrent part only
    return (1 - z) * n + z * h


class _Recurrent(nn.Module):
    """Shared by the three layers: parameters, guards and the time loop."""

    gates = 1  # rows of weight_ih per hidden unit
    torch_type: type[nn.RNNBase] = nn.RNN

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, use_builtin=False):
        super().__init__()
        self.input_size = validate.positive_int(input_size, "input_size")
        self.hidden_size = validate.positive_int(hidden_size, "hidden_size")
        self.bias, self.use_builtin = bias, use_builtin
        rows = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(rows)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(rows)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's initialisation: every parameter from ``U(-1/√H, 1/√H)``."""
        bound = 1 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, bias={self.bias}, "
            f"use_builtin={self.use_builtin}"
        )

    def _flat(self) -> list[torch.Tensor]:
        ps = [self.weight_ih, self.weight_hh]
        return ps + [self.bias_ih, self.bias_hh] if self.bias else ps

    def _check(self, x: torch.Tensor, states: tuple[torch.Tensor, ...]) -> bool:
        """Guard the input and the initial states; return whether ``x`` has a batch axis."""
        validate.ndim(x, (2, 3), "input", "(batch, seq, input_size) or unbatched (seq, input_size)")
        validate.floating(x, "input")
        validate.features(x, self.input_size, "input")
        batched = x.ndim == 3
        want = (1, x.shape[0], self.hidden_size) if batched else (1, self.hidden_size)
        for name, s in zip(("h_0", "c_0"), states):
            validate.tensor(s, name)
            if tuple(s.shape) != want:
                raise ValueError(
                    f"{name} must have shape {want} (1 layer, batch, hidden_size), "
                    f"got {tuple(s.shape)}"
                )
        return batched

    def load_torch_weights(self, ref: nn.RNNBase) -> _Recurrent:
        """Copy the weights of a one-layer, one-direction ``nn.RNN``/``nn.LSTM``/``nn.GRU`` of
        the same type and size (``weight_ih_l0`` → ``weight_ih`` …). Returns ``self``."""
        if type(ref) is not self.torch_type:
            raise TypeError(f"expected {self.torch_type.__name__}, got {type(ref).__name__}")
        layout = (ref.input_size, ref.hidden_size, ref.bias)
        if layout != (self.input_size, self.hidden_size, self.bias):
            raise ValueError(
                "size mismatch (input_size, hidden_size, bias): PyTorch layer "
                f"{layout}, this layer {(self.input_size, self.hidden_size, self.bias)}"
            )
        extra = dict(num_layers=ref.num_layers, bidirectional=ref.bidirectional)
        extra["proj_size"] = getattr(ref, "proj_size", 0)
        if extra != dict(num_layers=1, bidirectional=False, proj_size=0):
            raise ValueError(
                f"only one layer, one direction, no projection is supported, got {extra}"
            )
        if getattr(ref, "nonlinearity", "tanh") != "tanh":
            raise ValueError(f"only the tanh RNN is supported, got {ref.nonlinearity!r}")
        with torch.no_grad():
            for name, p in self.named_parameters():
                p.copy_(getattr(ref, f"{name}_l0"))
        return self


class RNN(_Recurrent):
    """Elman RNN with tanh, ``forward(x (B, T, I), h_0 (1, B, H) = 0)`` →
    ``output (B, T, H), h_n (1, B, H)``, as ``nn.RNN(batch_first=True)``."""

    cell, kernel = staticmethod(rnn_cell), staticmethod(torch.rnn_tanh)  # readable, fused

    def forward(
        self, x: torch.Tensor, h_0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batched = self._check(x, () if h_0 is None else (h_0,))
        x = x if batched else x.unsqueeze(0)  # (B, T, I)
        if h_0 is None:
            h = x.new_zeros(1, x.shape[0], self.hidden_size)  # (1, B, H)
        else:
            h = h_0 if batched else h_0.unsqueeze(1)  # (1, B, H)
        if self.use_builtin:  # PyTorch's fused loop, what nn.RNN / nn.GRU run
            out, h_n = self.kernel(x, h, self._flat(), self.bias, 1, 0.0, False, False, True)
        else:
            h, outs = h[0], []
            for t in range(x.shape[1]):  # sequential: step t needs step t−1
                h = self.cell(x[:, t], h, *self._flat())
                outs.append(h)
            out, h_n = torch.stack(outs, dim=1), h.unsqueeze(0)  # (B, T, H), (1, B, H)
        return (out, h_n) if batched else (out[0], h_n[:, 0])


class LSTM(_Recurrent):
    """Long short-term memory, ``forward(x (B, T, I), (h_0, c_0) (1, B, H) = 0)`` →
    ``output (B, T, H), (h_n, c_n) (1, B, H)``, as ``nn.LSTM(batch_first=True)``."""

    gates, torch_type = 4, nn.LSTM

    def forward(
        self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if hx is not None and (not isinstance(hx, tuple) or len(hx) != 2):
            raise TypeError(f"hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
        batched = self._check(x, () if hx is None else hx)
        x = x if batched else x.unsqueeze(0)  # (B, T, I)
        if hx is None:
            h = c = x.new_zeros(1, x.shape[0], self.hidden_size)  # (1, B, H)
        else:
            h, c = hx if batched else (s.unsqueeze(1) for s in hx)  # (1, B, H) each
        if self.use_builtin:  # PyTorch's fused loop, what nn.LSTM runs
            out, h_n, c_n = torch.lstm(
                x, (h, c), self._flat(), self.bias, 1, 0.0, False, False, True
            )
        else:
            h, c, outs = h[0], c[0], []
            for t in range(x.shape[1]):  # sequential: step t needs step t−1
                h, c = lstm_cell(x[:, t], h, c, *self._flat())
                outs.append(h)
            out, h_n, c_n = torch.stack(outs, dim=1), h.unsqueeze(0), c.unsqueeze(0)
        return (out, (h_n, c_n)) if batched else (out[0], (h_n[:, 0], c_n[:, 0]))


class GRU(RNN):
    """Gated recurrent unit, ``forward(x (B, T, I), h_0 (1, B, H) = 0)`` →
    ``output (B, T, H), h_n (1, B, H)``, as ``nn.GRU(batch_first=True)``: the RNN's loop
    with the GRU's step."""

    gates, torch_type = 3, nn.GRU
    cell, kernel = staticmethod(gru_cell), staticmethod(torch.gru)
