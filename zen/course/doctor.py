"""``zen doctor``: is this machine ready for the course?

Prints Python, torch, CUDA and the GPUs, the scale setting and every required package
with its version. Exits with status 1, naming the problem, when a required package is
missing or older than the course needs. Instructors run it on each lab machine.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from packaging.version import Version

#: distribution name -> minimum version the course is tested with
REQUIRED = {
    "torch": "2.6",
    "numpy": "1.24",
    "scikit-learn": "1.3",
    "matplotlib": "3.7",
    "einops": "0.7",
    "tqdm": "4.64",
    "nbformat": "5.9",
    "nbclient": "0.9",
    "ipykernel": "6.25",
}
#: used by some chapters or tools; reported, never fatal
OPTIONAL = {
    "transformers": "4.40",
    "jupyter-book": "1.0.4",
    "pytest": "7.4",
    "nbval": "0.11",
    "triton": "3.9",  # zen.kernels (the kernels chapter); CPU runs need TRITON_INTERPRET=1
}


def check_packages(required: dict[str, str]) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Return ``(rows, problems)``: one ``(name, installed, minimum)`` row per package."""
    rows, problems = [], []
    for name, minimum in required.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            rows.append((name, "missing", minimum))
            problems.append(
                f"{name} is not installed (need >= {minimum}); run: pip install -r requirements.txt"
            )
            continue
        rows.append((name, installed, minimum))
        if Version(installed).release < Version(minimum).release:
            problems.append(
                f"{name} {installed} is too old (need >= {minimum}); "
                f"run: pip install -U '{name}>={minimum}'"
            )
    return rows, problems


def triton_status(installed: str) -> str:
    """How zen.kernels will run here: compiled on CUDA, interpreted on the CPU, or not at all."""
    import os

    if installed == "missing":
        return "missing: zen.kernels and the kernels chapter need pip install 'triton>=3.9'"
    if os.environ.get("TRITON_INTERPRET") == "1":
        return f"{installed}, TRITON_INTERPRET=1: kernels run in the interpreter (CPU tensors)"
    return f"{installed}, compiled kernels (CUDA); CPU tensors need TRITON_INTERPRET=1"


def report(out=sys.stdout) -> int:
    """Print the report to ``out`` and return the exit status (0 ready, 1 not ready)."""
    from zen.scale import SCALES, get_scale

    print(f"zen doctor — {platform.platform()}", file=out)
    print(f"python      {platform.python_version()} ({sys.executable})", file=out)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        print(f"torch       {torch.__version__}", file=out)
        cuda = torch.cuda.is_available()
        status = (
            f"available, CUDA {torch.version.cuda}"
            if cuda
            else "not available (CPU only: every chapter still runs)"
        )
        print(f"cuda        {status}", file=out)
        for i in range(torch.cuda.device_count() if cuda else 0):
            props = torch.cuda.get_device_properties(i)
            print(
                f"  gpu {i}     {props.name}, {props.total_memory / 2**30:.1f} GiB, "
                f"capability {props.major}.{props.minor}",
                file=out,
            )
    try:
        scale = get_scale()
        print(f"ZEN_SCALE   {scale} (choices: {', '.join(SCALES)})", file=out)
        scale_problem = []
    except ValueError as err:
        scale_problem = [str(err)]
    rows, problems = check_packages(REQUIRED)
    opt_rows, _ = check_packages(OPTIONAL)
    problems += scale_problem
    print("\nrequired packages", file=out)
    for name, installed, minimum in rows:
        print(f"  {name:<14}{installed:<14}(>= {minimum})", file=out)
    print("optional packages", file=out)
    for name, installed, minimum in opt_rows:
        print(f"  {name:<14}{installed:<14}(>= {minimum})", file=out)
    installed = {name: version for name, version, _ in opt_rows}
    print(f"triton      {triton_status(installed.get('triton', 'missing'))}", file=out)
    if problems:
        print("\nNOT READY:", file=out)
        for p in problems:
            print(f"  - {p}", file=out)
        return 1
    print("\nready: every required package is present and recent enough.", file=out)
    return 0
