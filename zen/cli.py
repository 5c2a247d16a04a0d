"""The ``zen`` command (also ``python -m zen``).

Subcommands:
  doctor               check that this machine is ready for the course
  execute [PATH ...]   run notebooks top to bottom in a fresh kernel, outputs in place
  check [PATH ...]     list notebooks whose committed outputs are stale (exit 1 if any)
"""

from __future__ import annotations

import argparse
import sys

DEFAULT_NOTEBOOK_DIRS = ["book", "labs"]


def _doctor(args: argparse.Namespace) -> int:
    from zen.doctor import report

    return report()


def _execute(args: argparse.Namespace) -> int:
    from zen.notebooks import execute, find_notebooks

    paths = find_notebooks(args.paths or DEFAULT_NOTEBOOK_DIRS)
    for path in paths:
        print(f"executing {path} ...", flush=True)
        seconds = execute(path, timeout=args.timeout)
        print(f"  done in {seconds:.1f} s", flush=True)
    return 0


def _check(args: argparse.Namespace) -> int:
    import nbformat

    from zen.notebooks import find_notebooks, freshness_problems

    status = 0
    for path in find_notebooks(args.paths or DEFAULT_NOTEBOOK_DIRS):
        problems = freshness_problems(nbformat.read(path, as_version=4))
        for problem in problems:
            print(f"{path}: {problem}")
        status |= bool(problems)
    if not status:
        print("all notebooks are fresh")
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zen", description="Tools for the course Zen and the Art of Large-Model Architecture.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="check that this machine is ready for the course").set_defaults(func=_doctor)
    p = sub.add_parser("execute", help="run notebooks top to bottom, writing outputs in place")
    p.add_argument("paths", nargs="*", help="notebooks or folders (default: book/ and labs/)")
    p.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")
    p.set_defaults(func=_execute)
    p = sub.add_parser("check", help="report notebooks whose outputs are stale")
    p.add_argument("paths", nargs="*", help="notebooks or folders (default: book/ and labs/)")
    p.set_defaults(func=_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
