"""zen.kernels: the Triton kernels equal PyTorch and their tiled twins, reject bad input.

Without CUDA the kernels run in Triton's interpreter on CPU tensors (small sizes, float32 and
float16: the interpreter cannot run bfloat16 ``tl.dot``); with CUDA they are compiled.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

CUDA = torch.cuda.is_available()
if not CUDA:  # the interpreter is chosen when the kernels are defined: before the import
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

from zen import kernels  # noqa: E402
from zen.kernels.flash import flash_attention_forward  # noqa: E402

DEVICE = torch.device("cuda" if CUDA else "cpu")
TOL = {torch.float32: 2e-5, torch.float16: 2e-2}
pytestmark = pytest.mark.skipif(
    not CUDA and not kernels.INTERPRETED,
    reason="no CUDA and the kernels were defined without TRITON_INTERPRET=1",
)


def randn(*shape: int, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(DEVICE, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape", [(5, 37), (2, 3, 64), (1, 1)])
def test_softmax_equals_torch(shape, dtype):
    x = randn(*shape, dtype=dtype) * 4
    got = kernels.softmax(x)
    assert got.shape == x.shape and got.dtype == dtype
    torch.testing.assert_close(got.float(), x.float().softmax(-1), atol=TOL[dtype], rtol=0)


def test_softmax_large_scores_do_not_overflow():
    x = torch.tensor([[1000.0, 1001.0, 1002.0]], device=DEVICE)
    torch.testing.assert_close(kernels.softmax(x), x.softmax(-1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("m, k, n", [(33, 47, 21), (64, 32, 64), (5, 70, 3)])
def test_matmul_equals_torch_and_its_twin(m, k, n, dtype):
    a, b = randn(m, k, dtype=dtype, seed=1), randn(k, n, dtype=dtype, seed=2)
    got = kernels.matmul(a, b)
    assert got.shape == (m, n) and got.dtype == dtype
    expected = a.float() @ b.float()
    torch.testing.assert_close(got.float(), expected, atol=TOL[dtype] * k, rtol=TOL[dtype])
    twin = kernels.matmul_reference(a, b)
    torch.testing.assert_close(twin.float(), expected, atol=TOL[dtype] * k, rtol=TOL[dtype])


def test_matmul_transposed_inputs_and_custom_blocks():
    a, b = randn(40, 24, seed=3).t(), randn(50, 40, seed=4).t()  # non-contiguous strides
    torch.testing.assert_close(kernels.matmul(a, b, block=(16, 16, 16)), a @ b)


def attention_lse(q, k, causal):
    s = q.float() @ k.float().transpose(-2, -1) / q.shape[-1] ** 0.5
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], device=q.device).triu(1).bool(), float("-inf"))
    return s.logsumexp(-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("L, S, d", [(45, 45, 16), (33, 70, 32)])
def test_flash_forward_equals_sdpa_lse_and_twin(L, S, d, causal, dtype):
    q = randn(2, 2, L, d, dtype=dtype, seed=5)
    k, v = randn(2, 2, S, d, dtype=dtype, seed=6), randn(2, 2, S, d, dtype=dtype, seed=7)
    out, lse = flash_attention_forward(q, k, v, causal)
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=causal)
    torch.testing.assert_close(out.float(), expected, atol=TOL[dtype], rtol=0)
    torch.testing.assert_close(lse, attention_lse(q, k, causal), atol=TOL[dtype], rtol=0)
    twin_out, twin_lse = kernels.flash_attention_reference(q, k, v, causal)
    torch.testing.assert_close(twin_out.float(), expected, atol=TOL[dtype], rtol=0)
    torch.testing.assert_close(twin_lse, lse, atol=TOL[dtype], rtol=0)


@pytest.mark.parametrize("causal", [False, True])
def test_flash_backward_from_lse_equals_autograd(causal):
    q, k, v = (randn(1, 2, 40, 16, seed=s).requires_grad_() for s in (8, 9, 10))
    grad_out = randn(1, 2, 40, 16, seed=11)
    ours = torch.autograd.grad(kernels.flash_attention(q, k, v, causal), (q, k, v), grad_out)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    theirs = torch.autograd.grad(ref, (q, k, v), grad_out)
    for name, got, expected in zip("qkv", ours, theirs):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4, msg=f"d{name}")


def test_bad_inputs_are_rejected_with_clear_messages():
    x = randn(4, 16)
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        kernels.softmax(x.double())
    with pytest.raises(ValueError, match="last dimension"):
        kernels.softmax(torch.zeros(3, 0, device=DEVICE))
    with pytest.raises(ValueError, match="must share k"):
        kernels.matmul(x, x)
    with pytest.raises(ValueError, match="2-D"):
        kernels.matmul(x[None], x.t())
    with pytest.raises(ValueError, match="powers of two"):
        kernels.matmul(x, x.t(), block=(16, 24, 16))
    with pytest.raises(TypeError, match="share dtype"):
        kernels.matmul(x, x.t().half())
    q = randn(1, 2, 8, 16)
    with pytest.raises(ValueError, match="d_head must be one of"):
        kernels.flash_attention(randn(1, 2, 8, 24), randn(1, 2, 8, 24), randn(1, 2, 8, 24))
    with pytest.raises(ValueError, match=r"\(batch, heads, seq, d_head\)"):
        kernels.flash_attention(q[0], q[0], q[0])
    with pytest.raises(ValueError, match="must agree"):
        kernels.flash_attention(q, randn(1, 3, 8, 16), randn(1, 3, 8, 16))
    with pytest.raises(TypeError, match="causal must be a bool"):
        kernels.flash_attention(q, q, q, causal=1)


@pytest.mark.skipif(CUDA, reason="the interpreter's limits only")
def test_interpreter_refuses_bf16_dot_with_a_clear_message():
    a = randn(16, 16, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="cannot run tl.dot in bfloat16"):
        kernels.matmul(a, a)
    torch.testing.assert_close(kernels.softmax(a).float(), a.float().softmax(-1), atol=1e-2, rtol=0)


def test_cpu_tensor_for_a_compiled_kernel_names_the_fix():
    from zen.kernels import launch

    compiled = object()  # stands for a kernel defined without TRITON_INTERPRET=1
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1 before importing zen.kernels"):
        launch.check(torch.zeros(3), "x", compiled)


def test_triton_imported_before_the_interpreter_flag_names_the_fix(monkeypatch):
    from zen.kernels import launch

    class InterpretedFunction:  # stands for a kernel defined under TRITON_INTERPRET=1
        pass

    monkeypatch.setattr(launch, "language_interpreted", lambda: False)
    with pytest.raises(RuntimeError, match="imported before TRITON_INTERPRET=1 was set"):
        launch.check(torch.zeros(3), "x", InterpretedFunction())
