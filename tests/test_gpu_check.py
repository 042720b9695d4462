"""benchmarks/gpu_check.py: its smoke run prints every row, and one failing section never loses the others."""

from __future__ import annotations

import ast
import builtins
import shutil
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["gpu_check"]


def table_rows(output: str) -> list[list[str]]:
    body = [line for line in output.splitlines() if line.startswith("| ")][1:]  # less the header
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in body if not line.startswith("| ---")]


@pytest.mark.slow
def test_the_smoke_run_prints_the_environment_and_every_row(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith(f"torch {torch.__version__} ·") and "smoke" in first, first
    device = "cuda" if torch.cuda.is_available() else "cpu"
    has_pack = importlib.util.find_spec("masbench.engine.fuse") is not None
    expected = {
        "CUDA tests (pytest -m gpu)": "ok" if torch.cuda.is_available() else "skipped",
        "kill-and-resume": "ok",
        "ResNet18 fp32": "ok",
        "ResNet18 bf16 + channels_last": "ok",
        "ResNet18 bf16 + channels_last + torch.compile": "ok",
        "step: MAS(fused=True)": "ok",
        "step: MAS(foreach=True)": "ok",
        "step: MAS(foreach=False)": "ok",
        "step: Adam(fused=True)": "ok",
        f"MAS default path on {device}": "ok",
        "packed ResNet18 (2 members) vs unpacked": "ok" if has_pack else "skipped",
    }
    rows = table_rows(done.stdout)
    assert [(check, status) for check, _, status, _ in rows] == list(expected.items()), done.stdout
    results = {check: result for check, result, _, _ in rows}
    assert "resumed at epoch" in results["kill-and-resume"]
    # Without CUDA every GPU test is collected and skipped (some, not none: the marker selects them).
    assert re.fullmatch(r"0 passed, 0 failed, [1-9][0-9]* skipped", results["CUDA tests (pytest -m gpu)"]) \
        or torch.cuda.is_available()
    assert results[f"MAS default path on {device}"].endswith("no advice from smoke sizes")


def test_a_failing_section_is_one_row_and_the_others_still_run(gpu_check, monkeypatch, capsys):
    def breaks_midway(sizes, device):
        yield gpu_check.Row("first", "measured", "ok")
        raise RuntimeError("CUDA error: an illegal memory access\nwas encountered")

    def fine(sizes, device):
        yield gpu_check.Row("after", "measured too", "ok")

    monkeypatch.setattr(gpu_check, "SECTIONS", {"breaks": breaks_midway, "fine": fine})
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--smoke"])
    assert gpu_check.main() == 1
    rows = table_rows(capsys.readouterr().out)
    assert [(check, status) for check, _, status, _ in rows] == [("first", "ok"), ("breaks", "FAIL"), ("after", "ok")]
    assert rows[1][1] == "error: RuntimeError: CUDA error: an illegal memory access was encountered"


def test_a_section_past_the_budget_is_skipped_not_lost(gpu_check):
    rows = gpu_check.run_sections({"late": lambda sizes, device: iter([gpu_check.Row("x", "y", "ok")])},
                                  gpu_check.SMOKE, torch.device("cpu"), budget_s=-1)
    assert [(r.check, r.status) for r in rows] == [("late", "skipped")] and "budget" in rows[0].result


def test_an_unknown_section_is_one_line_and_exit_2(gpu_check, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--only", "tests,warp"])
    assert gpu_check.main() == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "'tests,warp'" in err and "resume" in err


def test_packed_is_skipped_only_when_the_fuser_itself_is_missing(gpu_check, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "masbench.engine.fuse", None)  # its import fails: ModuleNotFoundError
    rows = gpu_check.run_sections({"packed": gpu_check.check_packed}, gpu_check.SMOKE, torch.device("cpu"), 60)
    assert [(r.status, r.result) for r in rows] == [("skipped", "skipped: masbench.engine.fuse not available")]

    # masbench.engine.fuse is there, but a module it imports is not: that is a failure, not a skip.
    (tmp_path / "fuse.py").write_text("import a_dependency_that_is_not_installed\n")
    spec = importlib.util.spec_from_file_location("masbench.engine.fuse", tmp_path / "fuse.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.delitem(sys.modules, "masbench.engine.fuse")

    def broken(name, *args, **kwargs):
        if name == "masbench.engine.fuse":
            spec.loader.exec_module(module)
        return real_import(name, *args, **kwargs)

    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", broken)
    rows = gpu_check.run_sections({"packed": gpu_check.check_packed}, gpu_check.SMOKE, torch.device("cpu"), 60)
    assert [r.status for r in rows] == ["FAIL"] and "a_dependency_that_is_not_installed" in rows[0].result


def test_every_test_that_needs_cuda_carries_the_gpu_marker():
    """``gpu_check`` selects the GPU tests with ``-m gpu``: a CUDA-only test without the marker would never run."""
    unmarked = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                decorators = [ast.unparse(d) for d in node.decorator_list]
                if any("cuda" in d and "skipif" in d for d in decorators) and "pytest.mark.gpu" not in decorators:
                    unmarked.append(f"{path.name}::{node.name}")
    assert unmarked == []


@pytest.mark.slow
def test_a_rerun_that_restarts_instead_of_resuming_fails_the_resume_check(gpu_check, monkeypatch):
    """The adversary the check exists for: a rerun that starts over ends with the same metrics (the run is
    seeded) and a second attempt, so only the resume itself tells them apart. Here the checkpoint is lost."""
    kill = gpu_check.kill_after_first_checkpoint

    def kill_and_lose_the_checkpoint(command, db, checkpoints, cwd, bound_s):
        stored = kill(command, db, checkpoints, cwd, bound_s)
        shutil.rmtree(checkpoints)
        return stored

    monkeypatch.setattr(gpu_check, "kill_after_first_checkpoint", kill_and_lose_the_checkpoint)
    rows = gpu_check.run_sections({"resume": gpu_check.check_resume}, gpu_check.SMOKE, torch.device("cpu"), 60)
    assert [(r.check, r.status) for r in rows] == [("kill-and-resume", "FAIL")]
    assert "did not resume" in rows[0].result, rows[0].result
