"""Set up the Python environment that `make serve`, `make book` and `make test` use.

Run by the Makefile with the system's Python (standard library only):

    python3 tools/setup_env.py --python PY --requirements requirements.txt [--dry-run]

1. PY is the interpreter the Makefile will use: ``.venv/bin/python`` when make runs outside a
   virtual environment, the active environment's ``python`` inside one, or what ``PYTHON=``
   names. If PY is ``<dir>/bin/python`` and does not exist yet, the virtual environment
   ``<dir>`` is made (Debian's and Ubuntu's system Python refuses ``pip install`` outside
   one, PEP 668).
2. PyTorch, when PY cannot import it: the CPU build (PyTorch's CPU wheel index) on a machine
   where ``nvidia-smi`` finds no NVIDIA GPU, the default build from PyPI (CUDA) where it
   finds one. A torch already installed (CI pre-installs one) is kept.
3. ``pip install -r REQUIREMENTS -e .``.

``--dry-run`` prints the commands without running them (tests/test_setup_env.py).
``ZEN_TORCH=cpu|cuda`` overrides the GPU detection.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def has_nvidia_gpu() -> bool:
    """True when nvidia-smi is on PATH and lists at least one GPU."""
    forced = os.environ.get("ZEN_TORCH", "").lower()
    if forced in ("cpu", "cuda"):
        return forced == "cuda"
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def has_module(python: Path | str, module: str) -> bool:
    """Whether the interpreter finds the module (without importing it: torch is slow to import)."""
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([str(python), "-c", code], capture_output=True).returncode == 0


def venv_dir(python: Path) -> Path | None:
    """``<dir>`` when python is ``<dir>/bin/python`` (or Scripts/python.exe), else None."""
    if python.parent.name in ("bin", "Scripts") and python.name.startswith("python"):
        return python.parent.parent
    return None


def plan(python: str, requirements: str, *, base_python: str = sys.executable) -> list[list[str]]:
    """The commands that set up the environment, in order."""
    commands: list[list[str]] = []
    target = Path(python)
    exists = shutil.which(python) is not None or target.exists()
    if not exists:
        venv = venv_dir(target)
        if venv is None:
            raise SystemExit(f"setup_env: {python} does not exist and is not <dir>/bin/python")
        commands.append([base_python, "-m", "venv", str(venv)])
    if not (exists and has_module(python, "torch")):
        if has_nvidia_gpu():
            commands.append([python, "-m", "pip", "install", "torch"])
        else:
            commands.append([python, "-m", "pip", "install", "torch", "--index-url", CPU_INDEX])
    commands.append([python, "-m", "pip", "install", "-r", requirements, "-e", "."])
    return commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True, help="the interpreter to set up")
    parser.add_argument("--requirements", default="requirements.txt")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    for command in plan(args.python, args.requirements):
        print("+", shlex.join(command), flush=True)
        if args.dry_run:
            continue
        result = subprocess.run(command)
        if result.returncode != 0:
            if command[1:3] == ["-m", "venv"]:
                print(
                    "setup_env: could not make the virtual environment; on Debian or Ubuntu "
                    "install the venv module first: sudo apt-get install python3-venv",
                    file=sys.stderr,
                )
            return result.returncode
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
