"""A minimal, readable training loop with a progress bar and a returned history.

Chapters write their first loops by hand; once the idea is clear they call :func:`fit`::

    history = fit(model, digits.train, epochs=10, eval_data=digits.test)
    history.final("test_acc")
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from zen import validate
from zen.data import Split, batches
from zen.device import generator as seeded_generator

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class History:
    """What :func:`fit` observed: the loss of every step and per-epoch metrics."""

    step_loss: list[float] = field(default_factory=list)
    epochs: dict[str, list[float]] = field(default_factory=dict)

    def log(self, **values: float) -> None:
        """Append one value per metric for the epoch that just ended."""
        for key, value in values.items():
            self.epochs.setdefault(key, []).append(float(value))

    def final(self, key: str) -> float:
        """The last recorded value of ``key`` (``KeyError`` lists the known keys)."""
        if key not in self.epochs:
            raise KeyError(f"no metric {key!r} in history; known: {sorted(self.epochs)}")
        return self.epochs[key][-1]


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter or buffer (CPU for a model with neither)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def accuracy(
    model: nn.Module, data: Split, batch_size: int = 512, device: torch.device | None = None
) -> float:
    """Share of ``data`` that ``model`` classifies correctly (argmax of the last axis)."""
    device = device or model_device(model)
    was_training = model.training
    model.eval()
    correct = 0
    for x, y in batches(data, batch_size, shuffle=False):
        correct += (model(x.to(device)).argmax(-1) == y.to(device)).sum().item()
    model.train(was_training)
    return correct / len(data)


@torch.no_grad()
def evaluate_loss(
    model: nn.Module,
    data: Split,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    batch_size: int = 512,
    device: torch.device | None = None,
) -> float:
    """Mean of ``loss_fn`` over ``data`` (weighted by batch size)."""
    device = device or model_device(model)
    was_training = model.training
    model.eval()
    total = 0.0
    for x, y in batches(data, batch_size, shuffle=False):
        total += loss_fn(model(x.to(device)), y.to(device)).item() * len(y)
    model.train(was_training)
    return total / len(data)


def fit(
    model: nn.Module,
    data: Split | Callable[[], Iterable[Batch]],
    *,
    epochs: int = 10,
    batch_size: int = 64,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    eval_data: Split | None = None,
    metric: Callable[[nn.Module, Split], float] | None = accuracy,
    device: torch.device | None = None,
    seed: int = 0,
    progress: bool = True,
    desc: str = "train",
) -> History:
    """Train ``model`` for ``epochs`` passes over ``data`` and return a :class:`History`.

    Args:
        data: a :class:`~zen.data.Split` (shuffled into mini-batches each epoch with a
            generator seeded by ``seed``), or a function returning an iterable of
            ``(x, y)`` batches, called once per epoch.
        loss_fn: ``loss_fn(model(x), y)`` returns a scalar loss.
        optimizer: defaults to ``AdamW(lr=1e-3)`` over ``model.parameters()``.
        scheduler: a learning-rate schedule of ``optimizer``, stepped after every optimizer step.
        eval_data, metric: after every epoch, ``metric(model, eval_data)`` is logged as
            ``test_metric`` (``test_acc`` when ``metric`` is :func:`accuracy`) and the mean
            loss as ``test_loss``; ``metric`` on the training split is logged as ``train_acc``.

    History keys per epoch: ``train_loss`` (mean over the epoch's steps) and, when asked,
    ``train_acc``/``test_acc``/``test_loss``.
    """
    validate.positive_int(epochs, "epochs")
    validate.positive_int(batch_size, "batch_size")
    device = device or model_device(model)
    model.to(device).train()
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=1e-3)
    if scheduler is not None and scheduler.optimizer is not optimizer:
        raise ValueError("scheduler must schedule the optimizer that fit steps (pass both)")
    generator = seeded_generator(seed)
    history = History()
    name = "acc" if metric is accuracy else "metric"

    bar = tqdm(range(epochs), desc=desc, disable=not progress)
    for _ in bar:
        epoch_batches = (
            batches(data, batch_size, generator=generator) if isinstance(data, Split) else data()
        )
        losses = []
        for x, y in epoch_batches:
            loss = loss_fn(model(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(loss.item())
        if not losses:
            raise ValueError("data produced no batches")
        history.step_loss.extend(losses)
        history.log(train_loss=sum(losses) / len(losses))
        if metric is not None and isinstance(data, Split):
            history.log(**{f"train_{name}": metric(model, data)})
        if eval_data is not None:
            history.log(test_loss=evaluate_loss(model, eval_data, loss_fn, device=device))
            if metric is not None:
                history.log(**{f"test_{name}": metric(model, eval_data)})
        bar.set_postfix({k: f"{v[-1]:.4f}" for k, v in history.epochs.items()})
    model.eval()
    return history
