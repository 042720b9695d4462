"""The hostile case table (``tests/cases``), on SQLite and on PostgreSQL: each case one exact outcome."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from typer.testing import CliRunner

import cases
from cases import Case, Env
from report_fixtures import fill
from test_hostile import assert_refused, masbench

CASES: list[Case] = [case for info in pkgutil.iter_modules(cases.__path__)
                     for case in importlib.import_module(f"cases.{info.name}").CASES]


def test_the_table_holds_at_least_60_distinct_cases():
    names = [case.name for case in CASES]
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)
    assert len(CASES) >= 60, len(CASES)


def _run(case: Case, env: Env):
    args = list(case.filled(env))
    if case.subprocess:
        result = masbench(args, cwd=env.dir)
        return result.returncode, result.stdout, result.stderr
    from masbench.cli import app

    result = CliRunner().invoke(app, args)
    return result.exit_code, result.stdout, result.stderr


class _Result:
    def __init__(self, code, stdout, stderr):
        self.returncode, self.stdout, self.stderr = code, stdout, stderr


def _check(case: Case, env: Env) -> None:
    if case.setup is not None:
        case.setup(env)
    code, stdout, stderr = _run(case, env)
    if case.error is not None:
        assert_refused(_Result(code, stdout, stderr), case.error)
    else:
        assert code == case.code, (code, stdout[-2000:], stderr[-2000:])
        assert "Traceback" not in stdout + stderr, stderr[-2000:]
        for text in case.output:
            assert text in stdout, (text, stdout[-3000:])
        for text in case.absent:
            assert text not in stdout, (text, stdout[-3000:])
        for text in case.stderr:
            assert text in stderr, (text, stderr[-3000:])
    if case.after is not None:
        case.after(env)


@pytest.mark.parametrize("case", [c for c in CASES if c.stores], ids=lambda c: c.name)
def test_a_case_on_a_store(case, db_url, tmp_path, monkeypatch):
    from masbench.store import Store

    monkeypatch.chdir(tmp_path)  # the command's working directory is env.dir, in process as in a subprocess

    store = Store(db_url)
    fill(store)
    store.engine.dispose()
    _check(case, Env(db_url, tmp_path))


@pytest.mark.parametrize("case", [c for c in CASES if not c.stores], ids=lambda c: c.name)
def test_a_case_without_a_store(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _check(case, Env(f"sqlite:///{tmp_path / 'store.db'}", tmp_path))
