"""zen.swap: one walk that quantization and LoRA use to replace linear layers."""

import pytest
from torch import nn

from zen.swap import swap_linears


class Marked(nn.Linear):
    @classmethod
    def of(cls, linear: nn.Linear) -> "Marked":
        return cls(linear.in_features, linear.out_features)


def test_swap_linears_replaces_every_linear_or_the_named_ones():
    model = nn.Sequential(
        nn.Linear(2, 3), nn.ReLU(), nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    )
    assert swap_linears(model, Marked.of, names={"2.0"}) is model
    assert [type(m).__name__ for m in model.modules() if isinstance(m, nn.Linear)] == [
        "Linear",
        "Marked",
        "Linear",
    ]
    swap_linears(model, Marked.of)  # the swapped layer (a subclass) is not swapped again
    assert all(type(m) is Marked for m in model.modules() if isinstance(m, nn.Linear))


def test_swap_linears_says_when_nothing_matched():
    with pytest.raises(ValueError, match="matched names=None"):
        swap_linears(nn.Sequential(nn.ReLU()), Marked.of)
    with pytest.raises(ValueError, match=r"matched names=\['9'\]"):
        swap_linears(nn.Sequential(nn.Linear(2, 2)), Marked.of, names=["9"])
