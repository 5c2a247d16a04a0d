"""NF4 (QLoRA's 4-bit NormalFloat) against the table bitsandbytes ships, and its round trip."""

import pytest
import torch

from zen.compress.nf4 import (
    nf4_dequantize,
    nf4_levels,
    nf4_quantize,
    pack_4bit,
    unpack_4bit,
)

# bitsandbytes' NF4 code book (functional.py, `get_4bit_type("nf4")`), QLoRA appendix E
BNB_NF4 = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]  # fmt: skip


def test_levels_equal_the_published_table():
    torch.testing.assert_close(nf4_levels(), torch.tensor(BNB_NF4), atol=1e-6, rtol=0)


def test_pack_unpack_round_trip():
    codes = torch.randint(0, 16, (2 * 37,), generator=torch.Generator().manual_seed(0))
    packed = pack_4bit(codes)
    assert packed.dtype == torch.uint8 and packed.numel() == 37
    assert torch.equal(unpack_4bit(packed).long(), codes)


@pytest.mark.parametrize("block_size", [32, 64, 128])
def test_quantization_error_is_at_most_half_a_level_gap(device, block_size):
    w = torch.randn(16, 256, generator=torch.Generator().manual_seed(1)).to(device)
    t = nf4_quantize(w, block_size)
    w_hat = nf4_dequantize(t)
    assert w_hat.shape == w.shape
    gap = nf4_levels().diff().max().item()
    absmax = t.absmax.repeat_interleave(block_size).reshape(w.shape)
    assert ((w_hat - w).abs() <= absmax * gap / 2 + 1e-6).all()
    # every block's largest magnitude is stored exactly (it maps to ±1)
    blocks = w.reshape(-1, block_size)
    idx = blocks.abs().argmax(dim=1)
    rows = torch.arange(blocks.shape[0], device=device)
    torch.testing.assert_close(w_hat.reshape(-1, block_size)[rows, idx], blocks[rows, idx])
    assert t.nbytes() == w.numel() // 2 + 4 * w.numel() // block_size


def test_all_zero_block_stays_zero():
    w = torch.zeros(128)
    assert torch.equal(nf4_quantize(w).dequantize(), w)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="divide"):
        nf4_quantize(torch.randn(100), 64)
    with pytest.raises(ValueError, match="block_size"):
        nf4_quantize(torch.randn(128), 0)
    with pytest.raises(TypeError):
        nf4_quantize(torch.arange(128), 64)
    with pytest.raises(ValueError, match="even number"):
        pack_4bit(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 15\]"):
        pack_4bit(torch.tensor([0, 16]))
    with pytest.raises(TypeError, match="uint8"):
        unpack_4bit(torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="offset"):
        nf4_levels(0.7)
