"""zen.memory: predicted bytes against bytes measured by autograd's hooks and live storages."""

import pytest
import torch
import torch.utils.checkpoint as cp
from torch import nn

from zen import memory
from zen.parallel.memory import MemoryMeter
from zen.transformer import BlockConfig, TransformerBlock


def _measure_block(cfg: BlockConfig, batch: int, seq: int, dtype: torch.dtype, device) -> int:
    block = TransformerBlock(cfg).to(device, dtype).train()
    x = torch.randn(batch, seq, cfg.d_model, device=device, dtype=dtype, requires_grad=True)
    with memory.SavedBytes(exclude=block.parameters()) as saved:
        block(x).sum().backward()
    return saved.nbytes


@pytest.mark.parametrize(
    "norm_first, causal, dropout, d_ff, dtype",
    [
        (True, False, 0.0, None, torch.float32),
        (False, False, 0.0, 48, torch.float32),
        (True, True, 0.0, None, torch.float64),
        (True, True, 0.1, 40, torch.float32),
        (False, True, 0.2, None, torch.float64),
    ],
)
def test_block_activation_bytes_match_saved_tensors(
    norm_first, causal, dropout, d_ff, dtype, device
):
    for batch, seq, d, h in ((2, 7, 16, 2), (3, 12, 24, 4)):
        cfg = BlockConfig(
            d_model=d, n_heads=h, d_ff=d_ff, norm_first=norm_first, causal=causal, dropout=dropout
        )
        got = _measure_block(cfg, batch, seq, dtype, device)
        want = memory.block_activation_bytes(
            batch, seq, d, h, d_ff, dtype=dtype, causal=causal, dropout=dropout > 0
        )
        assert abs(got - want) <= 0.05 * want, (got, want)


def test_saved_bytes_counts_a_storage_once_and_excludes():
    w = torch.randn(8, 8, requires_grad=True)
    x = torch.randn(4, 8, requires_grad=True)
    with memory.SavedBytes(exclude=[w]) as saved:
        y = (x @ w) * (x @ w)  # x is saved twice (two matmuls): one storage
    assert saved.nbytes == x.nbytes + 2 * y.nbytes
    assert len(saved.records) == 3
    with memory.SavedBytes() as everything:
        x @ w
    assert everything.nbytes == x.nbytes + w.nbytes


def test_live_bytes_tracks_peak_and_frees():
    with memory.LiveBytes() as live:
        a = torch.ones(1000)  # 4000 bytes
        b = a * 2  # 8000 bytes alive
        del a
        c = b.view(10, 100)  # a view allocates nothing
        assert live.current() == 4000
    assert live.peak == 8000
    assert c.shape == (10, 100)


def test_live_bytes_sees_checkpointing_save_memory():
    cfg = BlockConfig(d_model=16, n_heads=2, norm_first=True)
    blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(4))
    x = torch.randn(2, 16, 16, requires_grad=True)
    held = {}
    for ckpt in (False, True):
        with memory.LiveBytes() as live:
            h = x
            for b in blocks:
                h = cp.checkpoint(b, h, use_reentrant=False) if ckpt else b(h)
            held[ckpt] = live.current()
    saved_inputs = 4 * x.nbytes  # each block's input, the last block's output
    assert held[True] <= saved_inputs + 1024
    assert held[False] > 4 * memory.block_activation_bytes(2, 16, 16, 2) * 0.9


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_model_state_bytes_match_a_real_optimizer(optimizer, device):
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3)).to(device)
    opt = {
        "sgd": lambda p: torch.optim.SGD(p, lr=0.1),
        "momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        "adam": lambda p: torch.optim.Adam(p, lr=0.1),
    }[optimizer](model.parameters())
    model(torch.randn(5, 10, device=device)).sum().backward()
    opt.step()
    params = list(model.parameters())
    states = [t for s in opt.state.values() for t in s.values() if t.dim() > 0]
    measured = MemoryMeter(
        lambda: {"params": params, "grads": [p.grad for p in params], "optim": states}
    ).current()
    assert measured == memory.model_state_bytes(memory.num_params(model), optimizer)


def test_mixed_precision_adam_is_2_2_12():
    model = nn.Linear(16, 16).to(torch.bfloat16)
    master = [p.detach().float().requires_grad_() for p in model.parameters()]
    opt = torch.optim.Adam(master, lr=1e-3)
    model(torch.randn(4, 16, dtype=torch.bfloat16)).float().sum().backward()
    for m, p in zip(master, model.parameters()):
        m.grad = p.grad.float()
    opt.step()
    for m in master:
        m.grad = None  # the fp32 gradient is transient
    states = [t for s in opt.state.values() for t in s.values() if t.dim() > 0] + master
    params = list(model.parameters())
    measured = MemoryMeter(
        lambda: {"params": params, "grads": [p.grad for p in params], "optim": states}
    ).current()
    n = memory.num_params(model)
    want = memory.model_state_bytes(n, "adam", mixed_precision=True)
    assert measured == want
    assert want == {"params": 2 * n, "grads": 2 * n, "optim": 12 * n}


def test_bad_input():
    with pytest.raises(ValueError, match="optimizer"):
        memory.model_state_bytes(10, "lion")
    with pytest.raises(ValueError, match="n_params"):
        memory.model_state_bytes(0)
    with pytest.raises(TypeError, match="mixed_precision"):
        memory.model_state_bytes(10, mixed_precision="yes")
    with pytest.raises(ValueError, match="n_heads"):
        memory.block_activation_bytes(2, 8, 30, 4)
    with pytest.raises(ValueError, match="seq_len"):
        memory.block_activation_bytes(2, 0, 32, 4)
    with pytest.raises(TypeError, match="dtype"):
        memory.block_activation_bytes(2, 8, 32, 4, dtype=torch.int64)
    with pytest.raises(TypeError, match="nn.Module"):
        memory.num_params([torch.zeros(3)])
