"""Reports, comparisons, the regression gate and plots, on a store filled with known runs."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import statistics
from pathlib import Path

import pytest
from report_fixtures import RUNS, epoch_row, fill, spec_for
from scipy import stats
from typer.testing import CliRunner

from masbench.cli import app
from masbench.store import Store
from masbench.sweep import run_values

runner = CliRunner()


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    fill(Store(url))
    return url


def expected(key, metric):
    """avg, std, max in percent over completed seeds, computed here from the table above."""
    values = [100 * (max(a) if metric == "best" else a[-1]) for a in RUNS[key].values() if isinstance(a, list)]
    std = statistics.stdev(values) if len(values) > 1 else float("nan")
    return statistics.mean(values), std, max(values), len(values)


@pytest.mark.parametrize("metric", ["best", "final"])
def test_csv_numbers_for_both_metrics(db, metric):
    result = runner.invoke(app, ["report", "--table", "--format", "csv", "--metric", metric, "--db", db])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["benchmark", "dataset", "model", "name", "settings", "config_key", "lambda_adam",
                             "lambda_sgd", "weights", "metric", "n", "avg_acc", "std_acc", "max_acc", "seeds",
                             "seed_accs", "masbench_version", "ci95_half", "flags", "left_out"]
    assert {r["metric"] for r in rows} == {metric}
    by_name = {(r["model"], r["name"]): r for r in rows}
    assert len(rows) == len(RUNS)
    for (optimizer, lam, model) in RUNS:
        name = spec_for(optimizer, lam, model, 0).name
        row = by_name[(model, name)]
        avg, std, top, n = expected((optimizer, lam, model), metric)
        assert int(row["n"]) == n
        assert float(row["avg_acc"]) == pytest.approx(avg, abs=1e-4)
        assert float(row["std_acc"]) == pytest.approx(std, abs=1e-4)
        assert float(row["max_acc"]) == pytest.approx(top, abs=1e-4)
        low, high = stats.t.interval(0.95, n - 1, loc=avg, scale=std / n**0.5) if n > 2 else (0.0, float("nan"))
        assert float(row["ci95_half"] or "nan") == pytest.approx((high - low) / 2, abs=1e-4, nan_ok=True)
    # Row order within a model: Adam, SGD, then MAS by lambda_adam.
    mlp = [r["name"].split("[")[0] + r["lambda_adam"] for r in rows if r["model"] == "mlp"]
    assert mlp == ["adam1.0", "sgd0.0", "mas0.3", "mas0.7"]


def test_best_and_final_differ_where_the_last_epoch_is_not_the_best(db):
    best = runner.invoke(app, ["report", "--format", "json", "--db", db, "--model", "mlp"])
    final = runner.invoke(app, ["report", "--format", "json", "--db", db, "--model", "mlp", "--metric", "final"])
    adam_best = next(r for r in json.loads(best.stdout) if r["optimizer"] == "adam")
    adam_final = next(r for r in json.loads(final.stdout) if r["optimizer"] == "adam")
    assert adam_best["avg_acc"] == pytest.approx((90 + 88 + 86) / 3, abs=1e-4)
    assert adam_final["avg_acc"] == pytest.approx((85 + 87 + 86) / 3, abs=1e-4)
    assert adam_best["metric"] == "best" and adam_final["metric"] == "final"


def test_markdown_bolds_the_best_of_each_column_within_each_model_group(db):
    result = runner.invoke(app, ["report", "--format", "markdown", "--db", db])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "best test accuracy over epochs" in text
    cnn, mlp = text.split("| **mlp** |")[0].split("| **cnn** |")[1], text.split("| **mlp** |")[1]
    # mlp: MAS 0.3 has the best avg (92.0) and the best max (93.0); cnn: MAS 0.3 avg 79.5, max 80.0.
    assert mlp.count("**") == 4 and "**92.00**" in mlp and "**93.00**" in mlp
    assert cnn.count("**") == 4 and "**79.50**" in cnn and "**80.00**" in cnn
    row = next(line for line in mlp.splitlines() if line.startswith("| MAS | 0.3"))
    assert row.endswith("| n<3 | 2 | 2/3 seeds |")  # two seeds: no interval worth a number
    row = next(line for line in mlp.splitlines() if line.startswith("| MAS | 0.7"))
    assert "2/3 seeds, 1 diverged" in row
    assert "| Adam |  |  | 88.00 | 90.00 | 2.00 | 4.97 | 3 |  |" in mlp  # ±CI95: t(0.975, 2) 2 / sqrt(3)
    assert "| std | ±CI95 | n |" in text


def test_latex_is_booktabs_with_bold_best_and_flags(db):
    result = runner.invoke(app, ["report", "--format", "latex", "--db", db])
    text = result.stdout
    for token in (r"\toprule", r"\midrule", r"\bottomrule", r"\textbf{92.00}", r"\textbf{93.00}", r"$^\dagger$",
                  r"\multicolumn{8}{l}{\textit{mlp}}", " & 2.00 & 4.97 & 3 ", r"$\pm$CI95",
                  r" & n\textless{}3 & 2 "):  # a cell of 2 seeds: "<" is "¡" in OT1 text
        assert token in text
    assert "n<3" not in text
    assert text.count(r"\textbf{") == 4


# Each of LaTeX's special characters and what prints it, written out independently of the renderer.
LATEX_PRINTS = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$", "{": r"\{",
                "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


@pytest.mark.parametrize("char", list(LATEX_PRINTS))
def test_latex_escapes_each_special_character(char):
    from masbench.report.render import _latex_escape

    assert _latex_escape(f"a{char}b{char}{char}") == f"a{LATEX_PRINTS[char]}b{LATEX_PRINTS[char] * 2}"


def test_latex_output_holds_names_verbatim(tmp_path):
    """A benchmark named with every special character: the caption reads back as the name, and the document's
    braces balance with no bare ``%`` (a stray ``{`` or ``%`` would break or truncate the document)."""
    name = "".join(LATEX_PRINTS) + " q_1 100% {x}"
    url = f"sqlite:///{tmp_path / 'latex.db'}"
    store = Store(url)
    for seed in (0, 1):
        spec = spec_for("adam", None, "mlp", seed).model_copy(update={"benchmark": name})
        run = store.ensure_run(run_values(spec))
        store.claim(run.id, "w", stale_after=60)
        store.record_epoch(run.id, "w", epoch_row(1, 0.5 + seed / 10))
        store.finish(run.id, "w", "completed")
    result = runner.invoke(app, ["report", "--format", "latex", "--db", url])
    assert result.exit_code == 0, result.output
    caption = next(line for line in result.stdout.splitlines() if line.startswith(r"\caption{"))
    inner = caption.removeprefix(r"\caption{").removesuffix("}")
    assert inner == f"digits (benchmark {''.join(LATEX_PRINTS.get(c, c) for c in name)}): best test accuracy over " \
                    f"epochs (selected on the test set), percent over seeds"
    text = result.stdout.replace(r"\{", "").replace(r"\}", "")
    assert text.count("{") == text.count("}"), "unbalanced braces"
    assert not re.search(r"(?<!\\)[%#~]", result.stdout), "an unescaped comment or special character"


def test_rich_table_and_output_file(db, tmp_path):
    out = tmp_path / "table.txt"
    result = runner.invoke(app, ["report", "--db", db, "--output", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "digits (benchmark b)" in text and "avg acc" in text and "acc max" in text and "2/3 seeds" in text


def test_leaderboard_ranks_within_dataset_and_model(db):
    result = runner.invoke(app, ["report", "--leaderboard", "--format", "csv", "--db", db])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    mlp = [(r["rank"], r["name"].split("[")[0], r["lambda_adam"]) for r in rows if r["model"] == "mlp"]
    assert mlp == [("1", "mas", "0.3"), ("2", "mas", "0.7"), ("3", "adam", "1.0"), ("4", "sgd", "0.0")]
    cnn = [r["rank"] for r in rows if r["model"] == "cnn"]
    assert cnn == ["1", "2"]


def test_the_leaderboard_carries_a_mix_s_weights_as_the_report_does(db):
    """csv: the JSON text of ``report --format csv``; json: the object of ``report --format json``; "" or null
    for cells that are no mix."""
    from masbench.spec import make_spec

    store = Store(db)
    for seed in (0, 1):
        spec = make_spec(dataset="digits", model="mlp", optimizer="mix:sgd=0.75,adam=0.25", epochs=3, seed=seed)
        run = store.ensure_run(run_values(spec))
        store.claim(run.id, "w", stale_after=60)
        store.record_epoch(run.id, "w", epoch_row(1, 0.5 + seed / 10))
        store.finish(run.id, "w", "completed")
    store.close()

    def output(*args):
        result = runner.invoke(app, ["report", *args, "--db", db])
        assert result.exit_code == 0, result.output
        return result.stdout

    table = {r["config_key"]: r["weights"] for r in csv.DictReader(io.StringIO(output("--format", "csv")))}
    board = {r["config_key"]: r["weights"] for r in csv.DictReader(io.StringIO(output("--leaderboard",
                                                                                      "--format", "csv")))}
    assert board == table and len(board) == len(RUNS) + 1
    assert sorted(board.values()) == [""] * len(RUNS) + ['{"adam": 0.25, "sgd": 0.75}']
    records = {r["config_key"]: r["weights"] for r in json.loads(output("--format", "json"))}
    assert {r["config_key"]: r["weights"] for r in json.loads(output("--leaderboard", "--format", "json"))} == records
    assert {"adam": 0.25, "sgd": 0.75} in records.values()


@pytest.mark.parametrize(
    "args, message",
    [
        (["report", "--format", "xml"], "Invalid --format: 'xml' (valid: rich, csv, markdown, latex, json, html)"),
        (["report", "--metric", "mean"], "Invalid --metric: 'mean' (valid: best, final, val)"),
        (["report", "--dataset", "cifar10"], "no runs in sqlite:///"),
        (["report", "--table", "--leaderboard"], "give --table or --leaderboard, not both"),
        (["compare", "adam"], "compare needs two configurations or more"),
        (["compare", "adam", "mas:x"], "Invalid configuration: 'mas:x'"),
        (["compare", "adam", "adamw"], "no data set and model in the store has all of adam, adamw"),
        (["compare", "--baseline", "missing.csv"], "baseline file missing.csv does not exist"),
        (["plot", "--output", "p.png"], "give --model (the store has: cnn, mlp)"),
        (["plot", "--output", "p.jpg", "--model", "mlp"], "Invalid --output: 'p.jpg'"),
    ],
)
def test_bad_report_input_is_one_line(db, args, message):
    result = runner.invoke(app, [*args, "--db", db])
    assert result.exit_code == 1, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_reporting_without_a_database_says_so(tmp_path):
    result = runner.invoke(app, ["report", "--db", f"sqlite:///{tmp_path / 'nothing.db'}"])
    assert result.exit_code == 1 and "no database at" in result.stderr
    assert not (tmp_path / "nothing.db").exists()


# --- compare ---------------------------------------------------------------------------------------------


def test_compare_paired_statistics_match_an_independent_computation(db):
    result = runner.invoke(app, ["compare", "adam", "sgd", "--model", "mlp", "--db", db])
    assert result.exit_code == 0, result.output
    adam = [100 * max(a) for a in RUNS[("adam", None, "mlp")].values()]
    sgd = [100 * max(a) for a in RUNS[("sgd", None, "mlp")].values()]
    d = [s - a for a, s in zip(adam, sgd)]
    mean, sd = statistics.mean(d), statistics.stdev(d)
    t = mean / (sd / math.sqrt(3))
    p = 2 * stats.t.sf(abs(t), 2)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}]" in result.stdout
    assert f"{p:.3g}" in result.stdout and "paired t-test" in result.stdout
    assert f"sgd is worse than adam by {abs(mean):.2f} points (p = {p:.3g}, paired t-test)" in result.stdout


def test_compare_welch_when_the_seeds_differ(db):
    from masbench.report import compare, parse_selector, run_accuracies

    comparison = compare(run_accuracies(Store(db, writable=False), model="mlp"),
                         [parse_selector("adam"), parse_selector("mas:0.3")])[0]
    diff = comparison.differences[0]
    adam = [100 * max(a) for a in RUNS[("adam", None, "mlp")].values()]
    mas = [100 * max(a) for a in list(RUNS[("mas", 0.3, "mlp")].values())[:2]]
    va, vb = statistics.variance(adam) / 3, statistics.variance(mas) / 2
    t = (statistics.mean(mas) - statistics.mean(adam)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 1)
    assert diff.test == "Welch t-test"
    assert diff.diff == pytest.approx(statistics.mean(mas) - statistics.mean(adam))
    assert diff.p_value == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-9)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert (diff.low, diff.high) == pytest.approx((diff.diff - half, diff.diff + half))
    assert comparison.reference.n == 3 and diff.other.n == 2


def test_compare_by_both_lambdas_and_by_run_name(db):
    name = spec_for("mas", 0.7, "mlp", 0).name
    a = runner.invoke(app, ["compare", "mas:0.3:0.7", name, "--model", "mlp", "--db", db])
    assert a.exit_code == 0, a.output
    assert f"mas:0.3:0.7 = {spec_for('mas', 0.3, 'mlp', 0).name}" in a.stdout


# --- the regression gate -------------------------------------------------------------------------------------


def test_gate_passes_on_itself_and_fails_on_a_regression(db, tmp_path):
    baseline = tmp_path / "baseline.csv"
    saved = runner.invoke(app, ["report", "--format", "csv", "--output", str(baseline), "--db", db])
    assert saved.exit_code == 0, saved.output
    same = runner.invoke(app, ["compare", "--baseline", str(baseline), "--db", db])
    assert same.exit_code == 0 and "no regression: 6 cells within tolerance" in same.stdout

    # The same study again, but SGD on mlp 5 points worse on every seed, and the cnn MAS cell gone.
    worse = {k: v for k, v in RUNS.items() if k != ("mas", 0.3, "cnn")}
    worse[("sgd", None, "mlp")] = {s: [a - 0.05 for a in accs] for s, accs in RUNS[("sgd", None, "mlp")].items()}
    url = f"sqlite:///{tmp_path / 'nightly.db'}"
    fill(Store(url), worse)
    gate = runner.invoke(app, ["compare", "--baseline", str(baseline), "--db", url])
    assert gate.exit_code == 1
    lines = sorted(line for line in gate.stdout.splitlines() if line.startswith("REGRESSION"))
    assert len(lines) == 2
    sgd_avg = expected(("sgd", None, "mlp"), "best")[0]
    # 5 points lower on every seed: the paired differences have no variance, so the floor (1 point) decides.
    assert (f"digits/mlp sgd[lr=0.01]: {sgd_avg:.2f} -> {sgd_avg - 5:.2f} (-5.00 points; allowed drop 1.00 = "
            f"max(floor 1, paired t-test at alpha 0.01: 0.00))") in lines[1]
    assert "digits/cnn mas[lambda_adam=0.3,lambda_sgd=0.7,lr=0.01]: no completed seed now" in lines[0]
    assert "2 of 6 cells regressed" in gate.stdout

    # --tolerance raises the floor: a 5-point drop within 6 points passes; --dataset filters both sides.
    lenient = runner.invoke(app, ["compare", "--baseline", str(baseline), "--db", url, "--dataset", "digits",
                                  "--tolerance", "6"])
    assert lenient.exit_code == 1 and "no completed seed now" in lenient.stdout
    assert "sgd[lr=0.01]" not in lenient.stdout and "1 of 6 cells regressed" in lenient.stdout


def test_gate_rejects_a_malformed_baseline(db, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("dataset,model,score\ndigits,mlp,1\n")
    result = runner.invoke(app, ["compare", "--baseline", str(path), "--db", db])
    assert result.exit_code == 1 and "lacks column(s) benchmark, name, config_key, metric, n" in result.stderr


# --- plots -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, suffix, magic", [("curves", "png", b"\x89PNG"), ("lambda", "svg", b"<?xml")])
def test_plots(db, tmp_path, kind, suffix, magic):
    out = tmp_path / f"plot.{suffix}"
    result = runner.invoke(app, ["plot", "--kind", kind, "--model", "mlp", "--output", str(out), "--db", db])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(magic)


@pytest.mark.parametrize("args", [["--kind", "curves", "--model", "mlp"], ["--kind", "lambda", "--model", "mlp"],
                                  ["--kind", "profile", "--target", "80"]])
def test_plot_checks_its_output_once(db, tmp_path, monkeypatch, args):
    from masbench.text import paths

    out, looked = tmp_path / "plot.svg", []
    real = paths.kind_of
    monkeypatch.setattr(paths, "kind_of", lambda path: looked.append(Path(path)) or real(path))
    result = runner.invoke(app, ["plot", *args, "--output", str(out), "--db", db])
    assert result.exit_code == 0, result.output
    assert looked.count(out) == 1 and out.read_bytes().startswith(b"<?xml")


@pytest.mark.parametrize("benchmark", ["nightly", "quick"])
def test_the_committed_baselines_match_their_suites(benchmark):
    """Every cell of the suite, and nothing else, by config key; the metric the CI gates with; readable."""
    from pathlib import Path

    from masbench.grid.benchmarks import plan_sweep
    from masbench.report import read_baseline

    repo = Path(__file__).resolve().parent.parent
    _, cells = plan_sweep(benchmark=benchmark, benchmarks_path=repo / "benchmarks.yaml")
    baseline = read_baseline(repo / "benchmarks" / "baselines" / f"{benchmark}.csv")
    assert set(baseline.cells["config_key"]) == {c.spec.config_key for c in cells}
    assert baseline.metric == "best" and set(baseline.cells["benchmark"]) == {benchmark}
