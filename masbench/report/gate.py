"""The regression gate: the store's cells against a saved baseline (``report --table --format csv``).

The rule, for each cell of the baseline (joined on ``config_key``, after the
same ``--dataset``/``--model``/``--benchmark`` filters on both sides):

- a cell with no completed seed now is a regression, and so is a cell missing a
  seed the baseline completed (failed, diverged or not run now): dropping a bad
  seed must not raise the average;
- else let D = (baseline avg acc) - (current avg acc), in points. D counts as a
  regression when it is larger than the floor (``--tolerance``, default 1 point)
  AND significant in a one-sided t-test at alpha = 0.01:
  paired by seed when both sides hold the same n >= 2 seeds (d_s = base_s - cur_s,
  t = mean(d) / (sd(d) / sqrt(n)), n - 1 degrees of freedom); else Welch's test
  with both sides' n and std (both n >= 2); with fewer than 2 seeds on a side
  there is no test and the floor alone decides.
  Equivalently: the allowed drop is max(floor, t_{1-alpha, df} * se), se being
  sd(d)/sqrt(n) (paired) or sqrt(s_b^2/n_b + s_c^2/n_c) (Welch).

D is exact at the baseline's resolution: each seed's accuracy as the baseline writes it (``acc_text``: 6
decimals of a percent, the same text for the store's side), the means and their difference in exact
decimal arithmetic, compared with the floor as typed. A drop equal to ``--tolerance`` is allowed: 56.6 ->
55.6 at ``--tolerance 1`` is no regression, though 56.6 - 55.6 is 1.0000000000000071 in doubles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import pandas as pd

from masbench.errors import MasbenchError
from masbench.text.paths import check_file
from masbench.report.aggregate import METRICS, cell_names
from masbench.text import numbers
from masbench.text.shown import one_line

ALPHA = 0.01
FLOOR = 1.0  # points: a smaller drop never counts, so bit-level differences between platforms cannot flake
REQUIRED = ["benchmark", "dataset", "model", "name", "config_key", "metric", "n", "avg_acc", "std_acc", "seeds",
            "seed_accs", "masbench_version"]
MAKE = "make one with masbench report --table --format csv --output FILE"


@dataclass
class Baseline:
    path: Path
    cells: pd.DataFrame  # one row per cell; ``seeds`` and ``accs`` as tuples
    metric: str
    version: str


def _number(text: str, what: str, where: str, *, integer: bool = False) -> float:
    try:
        value = numbers.integer(text) if integer else numbers.number(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or (integer and value < 0):
        raise MasbenchError(f"{where}: non-numeric {what} {text!r} (expected a {'count' if integer else 'number'})")
    return value


def _parse_row(row: dict, where: str) -> dict:
    n = int(_number(row["n"], "n", where, integer=True))
    if n == 0:
        raise MasbenchError(f"{where}: cell {row['name']} has no completed seed (n = 0): a baseline needs a complete run")
    seeds = tuple(int(_number(s, "seed", where, integer=True)) for s in row["seeds"].split())
    accs = tuple(_number(a, "seed_accs value", where) for a in row["seed_accs"].split())
    if len(seeds) != n or len(accs) != n or len(set(seeds)) != n:
        raise MasbenchError(f"{where}: n = {n} but seeds {row['seeds']!r} and seed_accs {row['seed_accs']!r} "
                            f"do not hold {n} distinct seeds with an accuracy each")
    avg = _number(row["avg_acc"], "avg_acc", where)
    std = _number(row["std_acc"], "std_acc", where) if n > 1 or row["std_acc"] else float("nan")
    for what, value in [("avg_acc", avg), *((f"seed_accs value (seed {s})", a) for s, a in zip(seeds, accs))]:
        if not 0 <= value <= 100:
            raise MasbenchError(f"{where}: cell {row['name']}: {what} {value:g} is out of range (accuracies are "
                                f"percent, in [0, 100])")
    if not (math.isnan(std) or 0 <= std <= 100):
        raise MasbenchError(f"{where}: cell {row['name']}: std_acc {std:g} is out of range (a spread of percents, "
                            f"in [0, 100])")
    if abs(avg - sum(accs) / n) > 1e-3:
        raise MasbenchError(f"{where}: avg_acc {avg} is not the mean of seed_accs ({sum(accs) / n:.4f})")
    if row["metric"] not in METRICS:
        raise MasbenchError(f"{where}: invalid metric {row['metric']!r} (valid: {', '.join(METRICS)})")
    return dict(row, n=n, seeds=seeds, accs=accs, avg_acc=avg, std_acc=std)


def read_baseline(path: str | Path) -> Baseline:
    """Parse and check a baseline CSV; any problem is one ``MasbenchError`` line naming the file and the line."""
    try:
        path = check_file(path, "baseline file")
    except MasbenchError as error:
        raise MasbenchError(f"{error} ({MAKE})") from None
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise MasbenchError(f"cannot parse baseline {path}: {one_line(error, 200)}") from None
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise MasbenchError(f"baseline {path} lacks column(s) {', '.join(missing)} ({MAKE})")
    if raw.empty:
        raise MasbenchError(f"baseline {path} holds no cells ({MAKE})")
    rows = [_parse_row(row, f"baseline {path}, line {i + 2}") for i, row in enumerate(raw.to_dict("records"))]
    cells = pd.DataFrame(rows)
    for column in ("metric", "masbench_version"):
        if cells[column].nunique() != 1:
            raise MasbenchError(f"baseline {path} mixes {column} values {sorted(cells[column].unique())}: one per file")
    duplicated = cells[cells.duplicated("config_key")]
    if not duplicated.empty:
        raise MasbenchError(f"baseline {path} has cell {duplicated['config_key'].iloc[0]} twice")
    return Baseline(path, cells, cells["metric"].iloc[0], cells["masbench_version"].iloc[0])


def allowed_drop(base: tuple[float, ...], base_seeds: tuple[int, ...], cur: tuple[float, ...],
                 cur_seeds: tuple[int, ...], alpha: float = ALPHA) -> tuple[str, float, float]:
    """(test, p value of the one-sided test that the current mean is lower, critical drop in points):
    the drop at which that p value reaches ``alpha``; 0 when the variance is 0 or there is no test."""
    from scipy import stats

    b, c = dict(zip(base_seeds, base)), dict(zip(cur_seeds, cur))
    drop = sum(base) / len(base) - sum(cur) / len(cur)
    if set(b) == set(c) and len(b) >= 2:
        d = pd.Series([b[s] - c[s] for s in sorted(b)], dtype=float)
        se, df, test = float(d.std()) / math.sqrt(len(d)), len(d) - 1, "paired t-test"
    elif len(b) >= 2 and len(c) >= 2:
        vb, vc = pd.Series(base).var() / len(b), pd.Series(cur).var() / len(c)
        se, test = math.sqrt(vb + vc), "Welch t-test"
        df = (vb + vc) ** 2 / (vb**2 / (len(b) - 1) + vc**2 / (len(c) - 1)) if vb + vc > 0 else 1.0
    else:
        return "no test (fewer than 2 seeds)", float("nan"), 0.0
    if se == 0:
        return test, 0.0 if drop > 0 else 1.0, 0.0
    return test, float(stats.t.sf(drop / se, df)), float(stats.t.ppf(1 - alpha, df)) * se


def gate_drop(base: tuple[float, ...], cur: tuple[float, ...]) -> Fraction:
    """D = mean(base) - mean(cur), in points, exactly: each accuracy (percent) as the baseline file writes it."""
    def mean(accs):
        return sum(numbers.exact(numbers.acc_text(a)) for a in accs) / len(accs)

    return mean(base) - mean(cur)


def is_regression(drop: Fraction, floor: float, critical: float) -> bool:
    """Whether ``drop`` (``gate_drop``) passes the allowed drop max(floor as typed, critical), exactly: a drop
    equal to the floor is allowed."""
    return drop > numbers.exact(floor) and drop > Fraction(critical)


@dataclass
class GateRow:
    where: str  # dataset/model and the cell's name
    config_key: str
    base_avg: float
    avg: float  # NaN: no completed seed now
    drop: float  # points, baseline - current
    test: str
    p_value: float
    critical: float  # points
    allowed: float  # max(floor, critical)
    regressed: bool
    message: str


@dataclass
class GateResult:
    checked: int
    rows: list[GateRow]
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[str]:
        return [row.message for row in self.rows if row.regressed]


def _check_cell(base: dict, current: dict | None, floor: float, alpha: float) -> GateRow:
    where = f"{base['dataset']}/{base['model']} {base['shown']}"
    if current is None or current["n"] == 0:
        return GateRow(where, base["config_key"], base["avg_acc"], float("nan"), float("nan"), "missing", float("nan"),
                       float("nan"), floor, True,
                       f"{where}: no completed seed now (baseline {base['avg_acc']:.2f})")
    missing = sorted(set(base["seeds"]) - set(current["seeds"]))
    if missing:
        avg = sum(current["accs"]) / len(current["accs"])
        return GateRow(where, base["config_key"], base["avg_acc"], avg, base["avg_acc"] - avg, "missing seeds",
                       float("nan"), float("nan"), floor, True,
                       f"{where}: seed(s) {', '.join(map(str, missing))} of the baseline have no completed run now "
                       f"(failed, diverged or not run)")
    test, p, critical = allowed_drop(base["accs"], base["seeds"], current["accs"], current["seeds"], alpha)
    avg = sum(current["accs"]) / len(current["accs"])
    exact_drop = gate_drop(base["accs"], current["accs"])
    drop, allowed = float(exact_drop), max(floor, critical)
    regressed = is_regression(exact_drop, floor, critical)
    message = (f"{where}: {base['avg_acc']:.2f} -> {avg:.2f} ({-drop:+.2f} points; allowed drop {allowed:.2f} = "
               f"max(floor {floor:g}, {test} at alpha {alpha:g}: {critical:.2f}))")
    return GateRow(where, base["config_key"], base["avg_acc"], avg, drop, test, p, critical, allowed, regressed, message)


def regression_gate(current: pd.DataFrame, baseline_path: str | Path, *, metric: str = "best",
                    benchmark: str | None = None, dataset: str | None = None, model: str | None = None,
                    tolerance: float | None = None, alpha: float = ALPHA) -> GateResult:
    """Check the cells of ``current`` (a ``cell_table`` of the store, with the same filters) against the
    baseline by the rule of this module; ``tolerance`` is the floor, in points (default ``FLOOR``)."""
    floor = FLOOR if tolerance is None else tolerance
    if not (math.isfinite(floor) and floor >= 0):
        raise MasbenchError(f"Invalid --tolerance: {tolerance} (must be a finite number of points >= 0)")
    baseline = read_baseline(baseline_path)
    if baseline.metric != metric:
        raise MasbenchError(f"baseline {baseline.path} records metric {baseline.metric!r}, the gate was asked for "
                            f"{metric!r} (give --metric {baseline.metric})")
    cells = baseline.cells
    for column, value in (("benchmark", benchmark), ("dataset", dataset), ("model", model)):
        if value is not None:
            if value not in set(cells[column]):
                raise MasbenchError(f"baseline {baseline.path} has no cell with {column} {value!r} "
                                    f"(it has: {', '.join(sorted(set(cells[column])))})")
            cells = cells[cells[column] == value]
    cells = cells.assign(shown=cell_names(cells.assign(settings=cells.get("settings", ""))))
    by_key = {row["config_key"]: row for row in current.to_dict("records")}
    rows = [_check_cell(base, by_key.get(base["config_key"]), floor, alpha) for base in cells.to_dict("records")]
    from masbench import __version__

    notes = [] if baseline.version == __version__ else [
        f"baseline {baseline.path} was made by masbench {baseline.version}, this is {__version__}"]
    return GateResult(len(rows), rows, notes)
