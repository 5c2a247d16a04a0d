"""Model surgery: replace the linear layers of a trained model, in place.

Quantization (``Int8Linear``, ``FakeQuantLinear``) and parameter-efficient fine-tuning
(``LoRALinear``) both take a trained network and put a new layer where each ``nn.Linear`` was,
built from it. The walk is the same; only the factory differs::

    Sequential(0: Linear, 1: ReLU, 2: Linear)
        ──swap_linears(make)──▶  Sequential(0: make(Linear), 1: ReLU, 2: make(Linear))
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from torch import nn


def swap_linears(
    model: nn.Module, make: Callable[[nn.Linear], nn.Module], names: Collection[str] | None = None
) -> nn.Module:
    """Replace ``model``'s ``nn.Linear`` layers by ``make(linear)``, in place; return ``model``.

    The layers replaced are those whose qualified name (as in ``model.named_modules()``) is in
    ``names``, or all of them when ``names`` is ``None``.

    Subclasses of ``nn.Linear`` are left alone, so a layer already swapped is not swapped twice.
    Raises ``ValueError`` when no layer matched.
    """
    found: list[str] = []

    def visit(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            full = f"{prefix}{name}"
            if type(child) is nn.Linear and (names is None or full in names):
                setattr(module, name, make(child))
                found.append(full)
            else:
                visit(child, f"{full}.")

    visit(model, "")
    if not found:
        raise ValueError(
            f"no nn.Linear in the model matched names={None if names is None else sorted(names)}"
        )
    return model
