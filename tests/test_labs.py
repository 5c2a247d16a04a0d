"""Lab gates: every check passes on the solution, fails on the blank version, and covers every TODO.

Also: the student versions are up to date with their sources, a vacuous check is caught, the
check helpers explain what differs, and the grader survives wrong answers, exceptions,
infinite loops and syntax errors.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from zen.course import labcheck
from zen.course.labs import (
    blank_regions,
    count_regions,
    gate_problems,
    grade,
    make_student,
    student_is_current,
)

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "labs" / "source").glob("*.ipynb"))


def test_there_are_labs():
    assert len(SOURCES) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_lab_gates(source):
    problems = gate_problems(
        nbformat.read(source, as_version=4),
        released=nbformat.read(ROOT / "labs" / source.name, as_version=4),
    )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_student_version_is_current_and_has_no_solution(source):
    assert student_is_current(source), f"run `zen lab release {source.relative_to(ROOT)}`"
    student = (ROOT / "labs" / source.name).read_text()
    assert "BEGIN SOLUTION" not in student and "NotImplementedError" in student


# ---------------------------------------------------------------- synthetic labs


def _lab(solution: str, check: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    cell = nbformat.v4.new_code_cell(check)
    cell.metadata["tags"] = ["check"]
    nb.cells = [nbformat.v4.new_code_cell(solution), cell]
    return nb


SOLUTION = (
    "def double(x):\n"
    "    ### BEGIN SOLUTION\n"
    "    # HINT: multiply by two\n"
    "    return 2 * x\n"
    "    ### END SOLUTION\n"
)
GOOD_CHECK = (
    "# Check: doubling\n"
    "from zen.course.labcheck import check_scalar\n"
    "check_scalar(double(21), 42.0, 'double')\n"
)


def test_make_student_stubs_regions_and_tags_checks():
    student = make_student(_lab(SOLUTION, GOOD_CHECK))
    assert "# TODO: multiply by two\n" in student.cells[0].source
    assert "raise NotImplementedError(" in student.cells[0].source
    assert "return 2 * x" not in student.cells[0].source
    assert "raises-exception" in student.cells[1].metadata["tags"]
    assert count_regions(_lab(SOLUTION, GOOD_CHECK)) == 1
    filled = blank_regions(_lab(SOLUTION, GOOD_CHECK), which=set())
    assert "return 2 * x" in filled.cells[0].source and "BEGIN" not in filled.cells[0].source


def test_hints_with_quotes_give_valid_stubs():
    solution = (
        "def f(x):\n"
        "    ### BEGIN SOLUTION\n"
        "    # HINT: use \"x\" and 'y'\n"
        "    return x\n"
        "    ### END SOLUTION\n"
    )
    stub = make_student(_lab(solution, GOOD_CHECK)).cells[0].source
    compile(stub, "stub", "exec")  # no syntax error
    namespace: dict = {}
    exec(stub, namespace)
    assert "# TODO: use \"x\" and 'y'" in stub
    with pytest.raises(NotImplementedError, match="TODO"):
        namespace["f"](1)


def test_stubs_fit_a_code_cell():
    hint = "a long hint " * 30
    solution = (
        "def f(x):\n    if x:\n        ### BEGIN SOLUTION\n"
        f"        # HINT: {hint}\n        return x\n        ### END SOLUTION\n"
    )
    stub = make_student(_lab(solution, GOOD_CHECK)).cells[0].source
    assert max(len(line) for line in stub.splitlines()) <= 100
    assert " ".join(hint.split()) in " ".join(line.strip("# ") for line in stub.splitlines())


def test_unbalanced_markers_are_rejected():
    with pytest.raises(ValueError, match="unbalanced"):
        make_student(_lab("### BEGIN SOLUTION\nx = 1\n", GOOD_CHECK))


@pytest.mark.slow
def test_a_sound_synthetic_lab_passes_the_gates():
    assert gate_problems(_lab(SOLUTION, GOOD_CHECK)) == []


@pytest.mark.slow
def test_a_vacuous_check_is_caught():
    vacuous = (
        "# Check: always passes\n"
        "from zen.course.labcheck import check_true\n"
        "check_true(True, 'fine', '')\n"
    )
    problems = gate_problems(_lab(SOLUTION, vacuous))
    assert any("gate 2" in p and "vacuous" in p for p in problems)
    assert any("gate 3" in p for p in problems)


@pytest.mark.slow
def test_a_check_that_records_no_pass_is_caught():
    problems = gate_problems(
        _lab(SOLUTION, "# Check: prints its own tick\nprint('✓ looks fine')\n")
    )
    assert any("gate 1" in p and "records no pass" in p for p in problems)


@pytest.mark.slow
def test_a_broken_check_is_caught():
    broken = "# Check: uses a name that does not exist\ncheck_scalar(double(21), 42.0)\n"
    problems = gate_problems(_lab(SOLUTION, broken))
    assert any("gate 1" in p for p in problems) and any("NameError" in p for p in problems)


# ---------------------------------------------------------------- grading


@pytest.mark.slow
@pytest.mark.parametrize(
    "body, score, fragment",
    [
        ("    return 2 * x\n", 1, "passed"),
        ("    return 2 * x + 1\n", 0, "expected 42, got 43"),
        ("    raise ValueError('oops')\n", 0, "ValueError: oops"),
        ("    while True:\n        pass\n", 0, "stopped after 2 s: an endless loop?"),
        ("    return 2 * x +\n", 0, "NameError"),  # a syntax error leaves `double` undefined
    ],
    ids=["correct", "wrong", "exception", "infinite-loop", "syntax-error"],
)
def test_grade_reports_each_kind_of_answer(tmp_path, body, score, fragment):
    check = (
        "# Check: doubling\n"
        "from zen.course.labcheck import check_function\n"
        "check_function(double, lambda x: 2 * x, [21], timeout=2)\n"
    )
    path = tmp_path / "done.ipynb"
    nbformat.write(
        make_student(
            _lab(
                "def double(x):\n    ### BEGIN SOLUTION\n" + body + "    ### END SOLUTION\n", check
            )
        ),
        path,
    )
    submission = nbformat.read(path, as_version=4)
    submission.cells[0].source = "def double(x):\n" + body
    nbformat.write(submission, path)
    released = tmp_path / "released.ipynb"
    nbformat.write(make_student(_lab(SOLUTION.replace("double", "double"), check)), released)
    report = grade(path, release=released, cell_timeout=30)
    assert report.score == score and len(report.checks) == 1
    assert fragment in f"{report.checks[0].error}: {report.checks[0].message}"
    payload = json.loads(report.to_json())
    assert payload["score"] == score and payload["total"] == 1


@pytest.mark.slow
def test_grade_interrupts_an_infinite_loop_outside_any_check(tmp_path):
    path, released = tmp_path / "loop.ipynb", tmp_path / "released.ipynb"
    nbformat.write(
        make_student(
            _lab(
                SOLUTION,
                "# Check: anything\n"
                "from zen.course.labcheck import check_true\n"
                "check_true(True, 'x', '')\n",
            )
        ),
        released,
    )
    submission = nbformat.read(released, as_version=4)
    submission.cells[0].source = "while True:\n    pass\n"
    nbformat.write(submission, path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "zen",
            "lab",
            "grade",
            str(path),
            "--release",
            str(released),
            "--timeout",
            "3",
            "--json",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "score: 1/1" in result.stdout  # it finished rather than hung
    assert (
        "note: cell 1: KeyboardInterrupt: stopped after 3 s: an endless loop?" in result.stdout
    )  # and says which cell
    payload = json.loads((tmp_path / "r.json").read_text())
    assert payload["total"] == 1 and payload["cell_errors"]


# ---------------------------------------------------------------- check helpers


def test_check_tensor_messages_say_what_differs():
    expected = torch.arange(6.0).reshape(2, 3)
    labcheck.check_tensor(expected.clone(), expected, "same")
    with pytest.raises(labcheck.LabCheckFailed, match=r"shape is \(3, 2\), expected \(2, 3\)"):
        labcheck.check_tensor(expected.T, expected)
    wrong = expected.clone()
    wrong[1, 2] = 99
    with pytest.raises(labcheck.LabCheckFailed, match=r"index \(1, 2\): expected 5, got 99"):
        labcheck.check_tensor(wrong, expected, hint="look at the last column")
    with pytest.raises(labcheck.LabCheckFailed, match="got None"):
        labcheck.check_tensor(None, expected)
    nan = expected.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(labcheck.LabCheckFailed, match="NaN or inf"):
        labcheck.check_tensor(nan, expected)
    with pytest.raises(labcheck.LabCheckFailed, match="dtype"):
        labcheck.check_tensor(expected.double(), expected, check_dtype=True)


def test_check_function_reports_student_exceptions_and_timeouts():
    def slow(x):
        while True:
            pass

    with pytest.raises(labcheck.LabCheckFailed, match="ZeroDivisionError"):
        labcheck.check_function(lambda x: 1 / 0, lambda x: x, [1])
    with pytest.raises(labcheck.LabCheckFailed, match=r"stopped after 0.5 s: an endless loop\?"):
        labcheck.check_function(slow, lambda x: x, [1], timeout=0.5)
    with pytest.raises(labcheck.LabCheckFailed, match="missing keys"):
        labcheck.check_function(
            lambda: {"a": torch.zeros(1)}, lambda: {"a": torch.zeros(1), "b": torch.zeros(1)}, [()]
        )
    with pytest.raises(labcheck.LabCheckFailed, match="not implemented yet"):
        labcheck.check_function(
            lambda x: (_ for _ in ()).throw(NotImplementedError("TODO")), lambda x: x, [1]
        )
    with pytest.raises(ValueError, match="at least one case"):
        labcheck.check_function(lambda x: x, lambda x: x, [])
    with pytest.raises(TypeError, match="reference must be callable"):
        labcheck.check_function(lambda x: x, None, [1])
    with pytest.raises(ValueError, match="atol and rtol"):
        labcheck.check_function(lambda x: x, lambda x: x, [1], atol=-1)
    with pytest.raises(ValueError, match="timeout"):
        labcheck.check_function(lambda x: x, lambda x: x, [1], timeout=0)
    with pytest.raises(labcheck.LabCheckFailed, match="expected a function or class, got NoneType"):
        labcheck.check_function(None, lambda x: x, [1])


def test_check_function_does_not_let_students_modify_inputs():
    x = torch.ones(3)

    def sneaky(t):
        t.mul_(0)
        return t

    with pytest.raises(labcheck.LabCheckFailed):
        labcheck.check_function(sneaky, lambda t: t, [x])
    assert torch.equal(x, torch.ones(3))


@pytest.mark.slow
def test_a_failed_check_shows_its_message_not_a_traceback_into_zen():
    import nbclient

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from zen.course.labcheck import check_true\n"
            "check_true(1 == 2, 'sum', 'one is not two', 'add')"
        ),
        nbformat.v4.new_code_cell("1 / 0"),
    ]
    nbclient.NotebookClient(nb, allow_errors=True, timeout=60).execute()
    failed, crashed = (cell.outputs[0] for cell in nb.cells)
    assert (
        failed.output_type == "error" and failed.ename == "LabCheckFailed"
    )  # still an error for graders
    shown = "\n".join(failed.traceback)
    assert "✗ sum: one is not two" in shown and "hint: add" in shown
    assert "labcheck.py" not in shown and len(failed.traceback) == 1
    assert (
        crashed.ename == "ZeroDivisionError" and len(crashed.traceback) > 1
    )  # other errors keep their traceback


# ---------------------------------------------------------------- feedback that fits the symptom


def test_named_cases_short_inputs_and_constant_multiples():
    x = torch.arange(1.0, 51.0)
    with pytest.raises(
        labcheck.LabCheckFailed,
        match=r"mean \(50 points: x=<tensor \(50,\)>\): .*got 50× the expected value: "
        r"a sum instead of a mean\?",
    ):
        labcheck.check_function(
            lambda x: x.sum(), lambda x: x.mean(), {"50 points": (x,)}, name="mean"
        )
    with pytest.raises(
        labcheck.LabCheckFailed, match=r"got ½× the expected value: a factor 2 missing\?"
    ):
        labcheck.check_function(
            lambda t: t, lambda t: 2 * t, {"small": (torch.tensor([1.0, 2.0, 3.0]),)}
        )
    with pytest.raises(labcheck.LabCheckFailed, match=r"got √8× the expected value"):
        labcheck.check_tensor(torch.ones(3, 8) * 8**0.5, torch.ones(3, 8))
    with pytest.raises(
        labcheck.LabCheckFailed, match=r"got the negative of the expected value: a sign error\?"
    ):
        labcheck.check_tensor(-torch.arange(1.0, 4.0), torch.arange(1.0, 4.0))
    with pytest.raises(
        labcheck.LabCheckFailed, match=r"expected \[1, 2\], got \[1, 3\]"
    ):  # short values shown whole
        labcheck.check_tensor(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 2.0]))


def test_integers_and_lists_are_compared_exactly_and_shown():
    with pytest.raises(labcheck.LabCheckFailed) as info:
        labcheck.check_function(lambda n: n + 1, lambda n: n, {"n=3152384": (3152384,)})
    assert "expected 3152384, got 3152385" in str(info.value) and "tolerance" not in str(info.value)
    with pytest.raises(
        labcheck.LabCheckFailed,
        match=r"expected \[7, 5\] \(2 items\), got \[7, 7\] \(2 items\); "
        r"first difference at position 1",
    ):
        labcheck.check_function(lambda ids: [7, 7], lambda ids: [7, 5], [([5, 5, 5],)])
    labcheck.check_function(
        lambda ids: (7, 5), lambda ids: [7, 5], [([5, 5, 5],)]
    )  # a tuple for a list is fine
    with pytest.raises(labcheck.LabCheckFailed, match="expected 42, got 43"):
        labcheck.check_scalar(43, 42)


def test_calling_the_reference_is_caught_by_any_path():
    import torch.nn.functional as F

    from zen import linreg

    q = torch.randn(2, 3, 4)

    def sneaky(q, k, v):
        return torch._C._nn.scaled_dot_product_attention(
            q, k, v
        )  # the fused kernel by another name

    def reference(q, k, v):
        return F.scaled_dot_product_attention(q, k, v)

    with pytest.raises(
        labcheck.LabCheckFailed,
        match="this check wants your own implementation, not F.scaled_dot_product_attention",
    ):
        labcheck.check_function(
            sneaky,
            reference,
            [(q, q, q)],
            forbid={"F.scaled_dot_product_attention": F.scaled_dot_product_attention},
        )
    with pytest.raises(labcheck.LabCheckFailed, match="not reference"):  # the check's own reference
        labcheck.check_function(lambda q, k, v: reference(q, k, v), reference, [(q, q, q)])
    x, y = torch.randn(20, 2), torch.randn(20)
    with pytest.raises(labcheck.LabCheckFailed, match="not zen.linreg.closed_form"):
        labcheck.call(
            lambda: linreg.closed_form(x, y), forbid={"zen.linreg.closed_form": linreg.closed_form}
        )
    with pytest.raises(
        labcheck.LabCheckFailed, match="not torch.nn.modules.activation.MultiheadAttention"
    ):
        labcheck.call(
            lambda: torch.nn.MultiheadAttention(4, 2), forbid=[torch.nn.MultiheadAttention]
        )
    with pytest.raises(ValueError, match="forbid"):
        labcheck.call(lambda: 1, forbid=[3])

    def shortcut_then_loop():
        linreg.closed_form(x, y)
        while True:
            pass

    with pytest.raises(labcheck.LabCheckFailed, match="not zen.linreg.closed_form"):
        labcheck.call(
            shortcut_then_loop, timeout=0.3, forbid={"zen.linreg.closed_form": linreg.closed_form}
        )


def test_call_wraps_student_code_and_names_the_helper():
    def helper(t):
        return t / "x"

    def student(t):
        return helper(t)

    with pytest.raises(labcheck.LabCheckFailed, match=r"your code raised TypeError"):
        labcheck.call(student, torch.ones(2))
    with pytest.raises(labcheck.LabCheckFailed, match=r"stopped after 0.2 s: an endless loop\?"):
        labcheck.call(lambda: [None for _ in iter(int, 1)], timeout=0.2)
    assert labcheck.call(lambda a, b=1: a + b, 1, b=2) == 3
    with pytest.raises(
        labcheck.LabCheckFailed, match="a check was called from inside the code being checked"
    ):
        labcheck.call(lambda: labcheck.passed("fake"))


HINT_SOURCES = sorted((ROOT / "labs" / "source").glob("*.ipynb"))


@pytest.mark.parametrize("source", HINT_SOURCES, ids=lambda p: p.stem)
def test_hints_do_not_state_a_solution_line(source):
    import re

    nb = nbformat.read(source, as_version=4)
    lines = {
        re.sub(r"\s+", "", line.split("#")[0])
        for c in nb.cells
        if c.cell_type == "code"
        for region in re.findall(r"### BEGIN SOLUTION(.*?)### END SOLUTION", c.source, re.S)
        for line in region.splitlines()
    }
    lines = {
        line
        for line in lines
        if len(line) >= 14 and not line.startswith(("return", "def", "for", "if"))
    }
    hints = [
        h
        for c in nb.cells
        if c.cell_type == "code"
        for h in re.findall(r"# HINT:(.*)|hint=\"([^\"]*)\"", c.source)
    ]
    text = re.sub(r"\s+", "", " ".join(a or b for a, b in hints))
    assert not [line for line in lines if line in text], "a hint states a line of the solution"
    leaked = [
        ".tril()",
        "zip(ids,ids[1:])",
        "copy_to_parallel(x)",
        "x@w_q.T",
        "(p−Y)/n",
        "B@A",
        "(r-s)%p",
        "clamp(round(",
        "z=μ+",
        "dim=-1",
        "softplus(−t)",
        "−softplus(t)",
        "where(chosen",
    ]  # fragments of solution lines that hints once gave away
    assert not [fragment for fragment in leaked if fragment in text]


def test_decorated_functions_are_told_apart():
    @torch.no_grad()
    def library(x):
        return x

    @torch.no_grad()
    def student(x):
        return x + 0

    assert labcheck.call(student, torch.ones(1), forbid={"library": library}) is not None
    with pytest.raises(labcheck.LabCheckFailed, match="not library"):
        labcheck.call(lambda x: library(x), torch.ones(1), forbid={"library": library})


def test_importing_labcheck_installs_nothing_until_a_check_fails():
    code = (
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance()\n"
        "from zen.course import labcheck\n"
        "assert shell.custom_exceptions == (), 'importing labcheck changed IPython'\n"
        "try:\n"
        "    labcheck.check_true(False, 'x', 'is false', 'make it true')\n"
        "except labcheck.LabCheckFailed:\n"
        "    pass\n"
        "assert shell.custom_exceptions == (labcheck.LabCheckFailed,)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
