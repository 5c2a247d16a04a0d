"""The ``zen`` command (also ``python -m zen``).

Subcommands:
  doctor               check that this machine is ready for the course
  execute [PATH ...]   run notebooks top to bottom in a fresh kernel, outputs in place
  check [PATH ...]     list notebooks whose committed outputs are stale or unswept (exit 1 if any)
  sweep [PATH ...]     re-run notebooks over seeds and thread counts; record which claims hold
  lab release [SRC]    make student versions of instructor labs (labs/source/*.ipynb) and run them
  lab grade PATH       grade a completed lab (or a folder of them) against its release
  lab nbgrader SRC OUT write the nbgrader source version of an instructor lab
"""

from __future__ import annotations

import argparse
import sys

DEFAULT_NOTEBOOK_DIRS = ["book", "labs"]


def _doctor(args: argparse.Namespace) -> int:
    from zen.course.doctor import report

    return report()


def _execute(args: argparse.Namespace) -> int:
    from zen.course.notebooks import execute, find_notebooks

    paths = find_notebooks(args.paths or DEFAULT_NOTEBOOK_DIRS)
    for path in paths:
        print(f"executing {path} ...", flush=True)
        seconds = execute(path, timeout=args.timeout)
        print(f"  done in {seconds:.1f} s", flush=True)
    return 0


def _check(args: argparse.Namespace) -> int:
    import nbformat

    from zen.course.notebooks import find_notebooks, freshness_problems
    from zen.course.sweep import sweep_problems

    status = 0
    for path in find_notebooks(args.paths or DEFAULT_NOTEBOOK_DIRS):
        problems = freshness_problems(nbformat.read(path, as_version=4))
        if path.resolve().parent.name == "book":
            problems += [f"sweep: {p}" for p in sweep_problems(path)]
        for problem in problems:
            print(f"{path}: {problem}")
        status |= bool(problems)
    if not status:
        print("all notebooks are fresh")
    return status


def _sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from zen.course.notebooks import find_notebooks
    from zen.course.sweep import RECORD_NAME, parse_ints, sweep, table, update_record

    try:
        seeds, threads = parse_ints(args.seeds, "seeds"), parse_ints(args.threads, "threads")
    except ValueError as err:
        print(f"zen sweep: {err}", file=sys.stderr)
        return 2
    paths = find_notebooks(args.paths or ["book"])
    print(
        f"sweeping {len(paths)} notebook(s) x seeds {seeds} x threads {threads} "
        f"on {args.cores or 'all'} core(s)",
        flush=True,
    )

    def show(result) -> None:
        verdict = "pass" if result.passed else f"FAIL ({len(result.failures)} failing cell(s))"
        print(
            f"  {result.notebook} seed {result.seed} threads {result.threads}: {verdict} "
            f"in {result.seconds:.0f} s",
            flush=True,
        )
        for failure in result.failures:
            print(f"      {failure}", flush=True)

    results = sweep(paths, seeds, threads, cores=args.cores, timeout=args.timeout, on_result=show)
    print()
    print(table(results))
    if not args.no_record:
        record = Path(args.record) if args.record else None
        groups: dict[Path, list] = {}
        for r in results:
            groups.setdefault(record or r.notebook.parent / RECORD_NAME, []).append(r)
        for target, rs in groups.items():
            if target.parent.name != "book" and record is None:
                continue  # only the book keeps a record unless one is named
            update_record(target, rs)
            print(f"recorded in {target}")
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


def _lab_release(args: argparse.Namespace) -> int:
    from pathlib import Path

    from zen.course.labs import release

    sources = [Path(p) for p in args.sources] or sorted(Path("labs/source").glob("*.ipynb"))
    if not sources:
        print("no instructor labs found in labs/source/", file=sys.stderr)
        return 1
    for source in sources:
        target = release(source, execute=not args.no_execute)
        print(f"{source} -> {target}")
    return 0


def _print_report(report) -> None:
    for c in report.checks:
        mark = "PASS" if c.passed else "FAIL"
        print(f"[{mark}] {c.name} ({c.points}/{c.max_points}, {c.seconds:.1f} s)")
        if not c.passed and c.message:
            print("       " + c.message.replace("\n", "\n       "))
    for problem in report.cell_errors:
        print(f"note: {problem}")
    if report.error:
        print(f"error: {report.error}")
    print(f"score: {report.score}/{report.total}")


def _lab_grade(args: argparse.Namespace) -> int:
    from pathlib import Path

    from zen.course.labs import grade, grade_folder, write_csv

    if Path(args.path).is_dir():
        try:
            reports = grade_folder(
                args.path, release=args.release, cell_timeout=args.timeout, workers=args.workers
            )
        except (FileNotFoundError, ValueError) as err:
            print(f"zen lab grade: {err}", file=sys.stderr)
            return 2
        for report in reports:
            print(
                f"{report.notebook}: {report.score}/{report.total}"
                + (f"  error: {report.error}" if report.error else "")
            )
        if args.csv:
            write_csv(reports, args.csv)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                f.write("[\n" + ",\n".join(r.to_json() for r in reports) + "\n]\n")
        return 1 if any(r.error for r in reports) else 0
    report = grade(args.path, release=args.release, cell_timeout=args.timeout)
    _print_report(report)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(report.to_json())
    if args.csv:
        write_csv([report], args.csv)
    return 0 if report.checks and not report.error and report.score == report.total else 1


def _lab_nbgrader(args: argparse.Namespace) -> int:
    from zen.course.nbgrader_source import write_nbgrader_source

    try:
        target = write_nbgrader_source(args.source, args.outdir)
    except (FileNotFoundError, NotADirectoryError, ValueError) as err:
        print(f"zen lab nbgrader: {err}", file=sys.stderr)
        return 2
    print(f"{args.source} -> {target}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zen", description="Tools for the course Zen and the Art of Large-Model Architecture."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="check that this machine is ready for the course").set_defaults(
        func=_doctor
    )
    p = sub.add_parser("execute", help="run notebooks top to bottom, writing outputs in place")
    p.add_argument("paths", nargs="*", help="notebooks or folders (default: book/ and labs/)")
    p.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")
    p.set_defaults(func=_execute)
    p = sub.add_parser("check", help="report notebooks whose outputs are stale")
    p.add_argument("paths", nargs="*", help="notebooks or folders (default: book/ and labs/)")
    p.set_defaults(func=_check)
    p = sub.add_parser(
        "sweep", help="re-run notebooks over seeds and thread counts (no outputs written)"
    )
    p.add_argument("paths", nargs="*", help="notebooks or folders (default: book/)")
    p.add_argument("--seeds", default="0-4", help="ZEN_SEED values, e.g. 0-4 or 0,3 (default 0-4)")
    p.add_argument("--threads", default="1,2", help="OMP_NUM_THREADS values (default 1,2)")
    p.add_argument(
        "--cores", type=int, default=None, help="cores to share between runs (default: all)"
    )
    p.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")
    p.add_argument("--record", help="record file (default: _sweep.json beside book notebooks)")
    p.add_argument("--no-record", action="store_true", help="do not write the record")
    p.set_defaults(func=_sweep)
    lab = sub.add_parser("lab", help="release and grade lab notebooks").add_subparsers(
        dest="lab_command", required=True
    )
    p = lab.add_parser("release", help="generate student versions from labs/source/ and run them")
    p.add_argument("sources", nargs="*", help="instructor notebooks (default: labs/source/*.ipynb)")
    p.add_argument(
        "--no-execute", action="store_true", help="write the student version without running it"
    )
    p.set_defaults(func=_lab_release)
    p = lab.add_parser(
        "grade", help="grade a completed lab notebook, or a folder of them, against the release"
    )
    p.add_argument(
        "path", help="a submitted notebook, or a folder of them (graded in a process pool)"
    )
    p.add_argument(
        "--release",
        help="the released lab to grade against (default: labs/<the submission's lab>.ipynb)",
    )
    p.add_argument("--timeout", type=int, default=60, help="seconds allowed per cell (default 60)")
    p.add_argument("--json", help="also write the machine-readable report to this file")
    p.add_argument("--csv", help="also write one row per submission to this CSV file")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="kernels at once for a folder (default: half the cores)",
    )
    p.set_defaults(func=_lab_grade)
    p = lab.add_parser("nbgrader", help="write the nbgrader source version of an instructor lab")
    p.add_argument("source", help="an instructor notebook, labs/source/<concept>.ipynb")
    p.add_argument("outdir", help="folder to write it to, e.g. course/source/lab01")
    p.set_defaults(func=_lab_nbgrader)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
