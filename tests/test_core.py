"""The zen core: device, seeding, the scale knob, offline data, the training loop, plots, doctor."""

from __future__ import annotations

import io
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import zen
from zen import data, plot, train
from zen.course import doctor


def test_get_device_default_and_override(monkeypatch):
    monkeypatch.delenv("ZEN_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert zen.get_device().type == expected
    monkeypatch.setenv("ZEN_DEVICE", "cpu")
    assert zen.get_device() == torch.device("cpu")
    assert zen.get_device("cpu") == torch.device("cpu")


def test_get_device_rejects_bad_names(monkeypatch):
    with pytest.raises(ValueError, match="device must be one of"):
        zen.get_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="torch.cuda.is_available"):
            zen.get_device("cuda")


def test_seed_everything_reproduces_all_generators():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    zen.seed_everything(123)
    first = draw()
    zen.seed_everything(123)
    assert draw() == first
    g = zen.seed_everything(5)
    assert torch.equal(
        torch.rand(3, generator=g), torch.rand(3, generator=torch.Generator().manual_seed(5))
    )


@pytest.mark.parametrize("bad", [-1, 1.5, "0", True])
def test_seed_everything_rejects_bad_seed(bad):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        zen.seed_everything(bad)


def test_zen_seed_offsets_every_seed(monkeypatch):
    monkeypatch.delenv("ZEN_SEED", raising=False)
    assert zen.seed_offset() == 0
    base = torch.rand(3, generator=zen.generator(2))
    assert torch.equal(base, torch.rand(3, generator=torch.Generator().manual_seed(2)))
    monkeypatch.setenv("ZEN_SEED", "3")
    assert zen.seed_offset() == 3
    assert torch.equal(
        torch.rand(3, generator=zen.generator(2)),
        torch.rand(3, generator=torch.Generator().manual_seed(5)),
    )
    assert zen.rng(2).random() == np.random.default_rng(5).random()
    g = zen.seed_everything(2)
    first = torch.rand(2)
    torch.manual_seed(5)
    assert torch.equal(first, torch.rand(2))
    assert torch.equal(
        torch.rand(2, generator=g), torch.rand(2, generator=torch.Generator().manual_seed(5))
    )
    # library functions that take a seed draw from the same offset stream
    x3, _ = data.make_linear_regression(n=4, seed=0)
    monkeypatch.setenv("ZEN_SEED", "0")
    assert not torch.equal(x3, data.make_linear_regression(n=4, seed=0)[0])
    assert torch.equal(x3, data.make_linear_regression(n=4, seed=3)[0])


def test_generator_on_a_device(device):
    g = zen.generator(0, device)
    assert g.device.type == device.type
    assert torch.rand(2, generator=g, device=device).device.type == device.type


@pytest.mark.parametrize("bad", ["-1", "one", "1.5"])
def test_zen_seed_rejects_bad_values(monkeypatch, bad):
    monkeypatch.setenv("ZEN_SEED", bad)
    with pytest.raises(ValueError, match="ZEN_SEED must be a non-negative integer"):
        zen.generator(0)


@pytest.mark.parametrize("bad", [-1, 1.5, "0", True])
def test_generator_rejects_bad_seed(bad):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        zen.generator(bad)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        zen.rng(bad)


def test_scale_knob(monkeypatch):
    monkeypatch.delenv("ZEN_SCALE", raising=False)
    assert zen.get_scale() == "small" and zen.by_scale(1, 2) == 1
    monkeypatch.setenv("ZEN_SCALE", "LARGE")
    assert zen.get_scale() == "large" and zen.by_scale(1, 2) == 2
    monkeypatch.setenv("ZEN_SCALE", "huge")
    with pytest.raises(ValueError, match="ZEN_SCALE must be one of"):
        zen.get_scale()


def test_load_digits_split_is_fixed_and_stratified():
    d = data.load_digits()
    assert d.train.x.shape == (1347, 64) and d.test.x.shape == (450, 64)
    assert d.train.x.dtype == torch.float32 and d.train.y.dtype == torch.int64
    assert 0.0 <= d.train.x.min() and d.train.x.max() <= 1.0
    again = data.load_digits()
    assert torch.equal(d.test.x, again.test.x)
    counts = torch.bincount(d.test.y, minlength=10)
    assert counts.min() >= 43 and counts.max() <= 47  # stratified: about 45 of each class
    assert data.load_digits(flat=False).train.x.shape == (1347, 1, 8, 8)
    with pytest.raises(ValueError, match="test_fraction"):
        data.load_digits(test_fraction=1.5)


def test_pydoc_corpus_is_offline_and_deterministic():
    text = data.pydoc_corpus()
    assert len(text) > 100_000 and "assert" in text
    assert data.pydoc_corpus(max_chars=1000) == text[:1000]
    with pytest.raises(ValueError, match="max_chars"):
        data.pydoc_corpus(max_chars=0)


def test_make_linear_regression_truth():
    x, y = data.make_linear_regression(n=20_000, weights=(2.0, -1.0), bias=0.5, noise=0.1, seed=1)
    assert x.shape == (20_000, 2) and y.shape == (20_000,)
    residual = y - (x @ torch.tensor([2.0, -1.0]) + 0.5)
    assert abs(residual.std().item() - 0.1) < 0.005
    with pytest.raises(ValueError, match="weights"):
        data.make_linear_regression(weights=())
    with pytest.raises(ValueError, match="noise"):
        data.make_linear_regression(noise=-1.0)


def test_blobs_and_batches():
    s = data.make_blobs_2d(n=100, centers=4)
    assert s.x.shape == (100, 2) and set(s.y.tolist()) <= {0, 1, 2, 3}
    sizes = [len(y) for _, y in data.batches(s, 32, shuffle=False)]
    assert sizes == [32, 32, 32, 4]
    with pytest.raises(ValueError, match="batch_size"):
        next(data.batches(s, 0))


def test_fit_learns_blobs_and_records_history(device):
    zen.seed_everything(0)
    blobs = data.make_blobs_2d(n=400, centers=3, spread=0.3)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3)).to(device)
    history = train.fit(model, blobs, epochs=5, batch_size=32, eval_data=blobs, progress=False)
    assert set(history.epochs) == {"train_loss", "train_acc", "test_loss", "test_acc"}
    assert len(history.epochs["train_loss"]) == 5
    assert history.epochs["train_loss"][-1] < history.epochs["train_loss"][0]
    assert history.final("test_acc") > 0.95
    with pytest.raises(KeyError, match="known"):
        history.final("nope")
    with pytest.raises(ValueError, match="epochs"):
        train.fit(model, blobs, epochs=0)


def test_fit_accepts_a_batch_function():
    zen.seed_everything(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    model = nn.Linear(3, 1)
    history = train.fit(
        model,
        lambda: [(x, y.unsqueeze(1))],
        epochs=200,
        metric=None,
        progress=False,
        loss_fn=nn.functional.mse_loss,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
    )
    assert history.final("train_loss") < 1e-4


def test_fit_steps_the_scheduler_after_every_step():
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5**step)
    batch = (torch.randn(4, 3), torch.randn(4, 1))
    train.fit(
        model,
        lambda: [batch, batch],
        epochs=3,
        metric=None,
        progress=False,
        loss_fn=nn.functional.mse_loss,
        optimizer=opt,
        scheduler=sched,
    )
    assert opt.param_groups[0]["lr"] == 0.5**6  # 2 steps x 3 epochs
    other = torch.optim.SGD(model.parameters(), lr=1.0)
    with pytest.raises(ValueError, match="scheduler must schedule the optimizer"):
        train.fit(
            model,
            lambda: [batch],
            epochs=1,
            metric=None,
            progress=False,
            loss_fn=nn.functional.mse_loss,
            optimizer=other,
            scheduler=sched,
        )


def test_plot_helpers_draw_labelled_figures():
    h = train.History()
    h.log(train_loss=1.0, test_acc=0.5)
    h.log(train_loss=0.5, test_acc=0.8)
    ax = plot.plot_history(h)
    assert ax.get_xlabel() == "epoch" and len(ax.get_lines()) == 2
    fig = plot.image_grid(torch.rand(10, 64), labels=list(range(10)), ncols=5, title="t")
    assert len(fig.axes) == 10
    with pytest.raises(ValueError, match="square"):
        plot.image_grid(torch.rand(3, 10))
    ax = plot.plot_losses({"a": [3, 2, 1]}, logy=True)
    assert ax.get_yscale() == "log"


def test_doctor_reports_ready_and_flags_missing(monkeypatch):
    out = io.StringIO()
    assert doctor.report(out) == 0
    text = out.getvalue()
    assert "torch" in text and "ZEN_SCALE" in text and "ready" in text
    rows, problems = doctor.check_packages({"surely-not-a-package-zen": "1.0", "torch": "999.0"})
    assert rows[0][1] == "missing" and len(problems) == 2
    assert "too old" in problems[1]
    monkeypatch.setattr(doctor, "REQUIRED", {"surely-not-a-package-zen": "1.0"})
    out = io.StringIO()
    assert doctor.report(out) == 1 and "NOT READY" in out.getvalue()


def test_doctor_command_line():
    result = subprocess.run(
        [sys.executable, "-m", "zen", "doctor"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "required packages" in result.stdout


def test_accuracy_works_for_models_without_parameters():
    class ArgmaxOfInput(nn.Module):
        def forward(self, x):
            return x

    s = data.Split(torch.eye(4), torch.arange(4))
    assert train.accuracy(ArgmaxOfInput(), s) == 1.0
    assert train.model_device(ArgmaxOfInput()) == torch.device("cpu")


def test_importing_zen_plot_changes_no_global_setting():
    code = (
        "import matplotlib; before = dict(matplotlib.rcParams)\n"
        "import zen.plot\n"
        "assert dict(matplotlib.rcParams) == before, 'importing zen.plot changed rcParams'\n"
        "zen.plot.use_style()\n"
        "assert matplotlib.rcParams['axes.grid'] is True\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_doctor_says_how_triton_kernels_will_run(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert "pip install 'triton" in doctor.triton_status("missing")
    assert "CPU tensors need TRITON_INTERPRET=1" in doctor.triton_status("3.9.0")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert "run in the interpreter" in doctor.triton_status("3.9.0")
