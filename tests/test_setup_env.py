"""The two-command set-up (make serve / make test): what tools/setup_env.py would run.

Each case runs the script with --dry-run in a clean directory, with a PATH that decides
whether an NVIDIA GPU is found, and checks the commands it prints; nothing is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "setup_env.py"
CPU_INDEX = "--index-url https://download.pytorch.org/whl/cpu"


def _run(cwd: Path, python: str, *, gpu: bool | None, requirements="requirements.txt"):
    """The commands setup_env.py prints, run from cwd with or without a fake nvidia-smi."""
    bin_dir = cwd / "fake-bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    if gpu is not None:
        listing = "GPU 0: NVIDIA H100 (UUID: GPU-0)" if gpu else "No devices were found"
        smi.write_text(f"#!/bin/sh\necho '{listing}'\nexit {0 if gpu else 6}\n")
        smi.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "ZEN_TORCH")}
    # only the fake nvidia-smi and the basics: no real GPU tool can leak in
    env["PATH"] = f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"
    cmd = [sys.executable, str(SCRIPT), "--python", python, "--requirements", requirements]
    result = subprocess.run(
        [*cmd, "--dry-run"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]


@pytest.mark.parametrize("gpu", [None, False])
def test_fresh_machine_without_gpu_makes_a_venv_and_installs_cpu_torch(tmp_path, gpu):
    venv_python = str(tmp_path / ".venv" / "bin" / "python")
    commands = _run(tmp_path, venv_python, gpu=gpu)
    assert len(commands) == 3, commands
    assert commands[0].endswith(f"-m venv {tmp_path / '.venv'}")
    assert commands[1] == f"{venv_python} -m pip install torch {CPU_INDEX}"
    assert commands[2] == f"{venv_python} -m pip install -r requirements.txt -e ."


def test_fresh_machine_with_an_nvidia_gpu_installs_the_default_cuda_build(tmp_path):
    venv_python = str(tmp_path / ".venv" / "bin" / "python")
    commands = _run(tmp_path, venv_python, gpu=True, requirements="requirements-dev.txt")
    assert commands[1] == f"{venv_python} -m pip install torch", commands
    assert commands[2] == f"{venv_python} -m pip install -r requirements-dev.txt -e ."


def test_an_installed_torch_is_kept(tmp_path):
    """As in CI: a venv with torch (this one) gets only the requirements."""
    commands = _run(tmp_path, sys.executable, gpu=True)
    assert commands == [f"{sys.executable} -m pip install -r requirements.txt -e ."]


def test_an_existing_venv_without_torch_gets_torch_but_is_not_remade(tmp_path):
    venv = tmp_path / "env"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = str(venv / "bin" / "python")
    commands = _run(tmp_path, python, gpu=False)
    assert commands == [
        f"{python} -m pip install torch {CPU_INDEX}",
        f"{python} -m pip install -r requirements.txt -e .",
    ]


def test_the_makefile_uses_dot_venv_outside_a_virtual_environment(tmp_path):
    """`make -n install` outside a venv: the set-up targets .venv/bin/python."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # under `make test PYTHON=python` (CI), MAKEFLAGS would pass PYTHON on to this make too
    drop = ("VIRTUAL_ENV", "PYTHON", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    out = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "install"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert f'--python "{ROOT}/.venv/bin/python"' in out.stdout, out.stdout
    env["VIRTUAL_ENV"] = "/somewhere/venv"
    out = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "install"], env=env, capture_output=True, text=True
    )
    assert '--python "python"' in out.stdout, out.stdout
    out = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "install", "PYTHON=python3.11"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert '--python "python3.11"' in out.stdout, out.stdout
