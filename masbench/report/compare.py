"""Statistics between configurations of one study: difference, confidence interval, t-test.

A configuration on the command line selects one cell (a ``config_key``) per data
set and model; a selector that matches several cells there (the same optimizer
with other epochs, say) is refused with the cells it matches, which a config
key prefix then tells apart. Each side's seeds come from its one cell, so a
seed is never counted twice nor silently replaced.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import pandas as pd

from masbench.errors import MasbenchError
from masbench.grid.optimizers import optimizer_name
from masbench.optimizer_names import is_path, stored_optimizer
from masbench.report.aggregate import TABLE, cell_names, cell_table
from masbench.report.multiple import family_size, holm
from masbench.report.significance import constant
from masbench.spec import is_mix, parse_mix, resolve_weights
from masbench.text.numbers import number

CONFIG_KEY = re.compile(r"[0-9a-f]{6,64}")


@dataclass(frozen=True)
class Selector:
    """A configuration on the command line: ``mas:0.3``, ``mas:0.3:0.7``, an optimizer's name (``adam``,
    ``radam``, a plugin's) or import path, a mix by its weights (``mix:adam=0.3,sgd=0.7``, in any order), a run
    name, or a config key (a prefix of 6 hex digits or more)."""

    text: str
    optimizer: str | None = None
    lambda_adam: float | None = None
    lambda_sgd: float | None = None
    name: str | None = None
    config_key: str | None = None
    weights: str | None = None  # a mix's, as the cells' ``weights`` column holds them (JSON, keys sorted)

    def matches(self, cells: pd.DataFrame) -> pd.Series:
        if self.config_key is not None:
            return cells["config_key"].str.startswith(self.config_key)
        if self.name is not None:
            return cells["name"] == self.name
        if self.weights is not None:
            return cells["weights"] == self.weights
        mask = cells["optimizer"] == self.optimizer
        if self.lambda_adam is not None:
            mask &= (cells["lambda_adam"] - self.lambda_adam).abs() < 1e-9
        if self.lambda_sgd is not None:
            mask &= (cells["lambda_sgd"] - self.lambda_sgd).abs() < 1e-9
        return mask


def parse_selector(text: str) -> Selector:
    valid = ("valid: mas:LAMBDA_ADAM, mas:LAMBDA_ADAM:LAMBDA_SGD, an optimizer's name or import path (adam, sgd, "
             "radam, torch.optim.RAdam, ...), mix:NAME=WEIGHT,..., a run name such as mas[...], or a config key")
    if "[" in text:
        return Selector(text, name=text)
    if CONFIG_KEY.fullmatch(text):
        return Selector(text, config_key=text)
    if is_mix(text):
        try:
            weights = resolve_weights(parse_mix(text))
        except ValueError as error:
            raise MasbenchError(str(error)) from None
        return Selector(text, optimizer="mix", weights=json.dumps(weights, sort_keys=True))
    head, *numbers = text.split(":") if not is_path(text) or text.startswith("mas:") else (text,)
    if head == "mas" and 1 <= len(numbers) <= 2:
        try:
            values = [number(v) for v in numbers]
        except ValueError:
            values = []
        if values and all(0 <= v for v in values):
            return Selector(text, optimizer="mas", lambda_adam=values[0],
                            lambda_sgd=values[1] if len(values) == 2 else None)
    if not numbers and is_path(head) and not head.startswith("torch."):
        try:  # matched by the name the store holds: a command that reads imports no user code
            return Selector(text, optimizer=stored_optimizer(head))
        except ValueError:
            pass
    if not numbers and head not in ("mas", "mix"):
        try:
            return Selector(text, optimizer=stored_optimizer(optimizer_name(head, "configuration")))
        except ValueError:
            pass
    raise MasbenchError(f"Invalid configuration: {text!r} ({valid})")


@dataclass
class Side:
    label: str
    name: str
    values: dict[int, float]  # seed -> accuracy, percent (one cell: each seed once)
    config_key: str = ""
    settings: str = ""  # what tells this cell apart from others of its name ("epochs=2"), or ""

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(pd.Series(list(self.values.values()), dtype=float).mean()) if self.values else float("nan")

    @property
    def std(self) -> float:
        return float(pd.Series(list(self.values.values()), dtype=float).std()) if self.n > 1 else float("nan")


@dataclass
class Difference:
    other: Side
    diff: float  # other - reference, points
    low: float
    high: float
    p_value: float
    test: str | None  # "paired t-test", "Welch t-test", or None when too few seeds
    verdict: str
    p_adjusted: float = math.nan  # Holm-adjusted over every test of one compare (``p_value`` when it made one)


@dataclass
class Comparison:
    benchmark: str
    dataset: str
    model: str
    reference: Side
    differences: list[Difference]


def _verdict(a: Side, b: Side, diff: float, p: float, test: str, level: float) -> str:
    if math.isnan(p):
        return (f"{b.label} and {a.label} differ by exactly {diff:+.2f} points on every seed (no variance to test)"
                if diff else f"{b.label} and {a.label} are identical on every seed")
    if p < 1 - level:
        return (f"{b.label} is {'better' if diff > 0 else 'worse'} than {a.label} by {abs(diff):.2f} points "
                f"(p = {p:.3g}, {test})")
    return f"no significant difference between {b.label} and {a.label} (p = {p:.3g}, {test})"


def _difference(a: Side, b: Side, level: float = 0.95) -> Difference:
    """b - a with a confidence interval and a two-sided t-test: paired by seed when both have the same seeds."""
    from scipy import stats

    diff = b.mean - a.mean
    if set(a.values) == set(b.values) and a.n >= 2:
        seeds = sorted(a.values)
        d = pd.Series([b.values[s] - a.values[s] for s in seeds], dtype=float)
        se, df, test = d.std() / math.sqrt(len(d)), len(d) - 1, "paired t-test"
        p = (math.nan if constant(list(d))  # one number on every seed, rounded two ways: no variance to test
             else float(stats.ttest_rel([b.values[s] for s in seeds], [a.values[s] for s in seeds]).pvalue))
        se = 0.0 if math.isnan(p) else se
    elif a.n >= 2 and b.n >= 2:
        va, vb = a.std**2 / a.n, b.std**2 / b.n
        se = math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1)) if va + vb > 0 else float("nan")
        test = "Welch t-test"
        p = float(stats.ttest_ind(list(b.values.values()), list(a.values.values()), equal_var=False).pvalue)
    else:
        verdict = f"too few seeds for a test ({a.label}: {a.n}, {b.label}: {b.n}; need 2 on each side)"
        return Difference(b, diff, float("nan"), float("nan"), float("nan"), None, verdict)
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se if se > 0 else 0.0
    return Difference(b, diff, diff - half, diff + half, p, test, _verdict(a, b, diff, p, test, level), p)


def _side(selector: Selector, group: pd.DataFrame, where: str) -> Side | None:
    found = group[selector.matches(group)]
    if len(found) > 1:
        shown = ", ".join(f"{name} (config {key})" for name, key in zip(cell_names(found), found["config_key"]))
        raise MasbenchError(f"{selector.text!r} is ambiguous in {where}: it matches {shown} "
                            f"(give a config key)")
    if found.empty:
        return None
    cell = found.iloc[0]
    return Side(selector.text, cell["name"], dict(zip(cell["seeds"], cell["accs"])), cell["config_key"],
                cell["settings"])


def compare(runs: pd.DataFrame, selectors: list[Selector]) -> list[Comparison]:
    """For each (benchmark, data set, model) holding every selected configuration: the first against each other."""
    if len(selectors) < 2:
        raise MasbenchError("compare needs two configurations or more, e.g. masbench compare adam mas:0.3")
    cells = cell_table(runs)
    comparisons = []
    for (benchmark, dataset, model), group in cells.groupby(TABLE, sort=False):
        where = f"{dataset}/{model}" + (f" (benchmark {benchmark})" if benchmark else "")
        sides = []
        for selector in selectors:
            side = _side(selector, group, where)
            if side is None:
                break
            sides.append(side)
        if len(sides) == len(selectors):
            comparisons.append(Comparison(benchmark, dataset, model, sides[0],
                                          [_difference(sides[0], other) for other in sides[1:]]))
    if not comparisons:
        wanted = ", ".join(s.text for s in selectors)
        raise MasbenchError(f"no data set and model in the store has all of {wanted} (see masbench report --leaderboard)")
    correct_holm(comparisons)
    return comparisons


def correct_holm(comparisons: list[Comparison], level: float = 0.95) -> int:
    """Holm-Bonferroni over every test of ``comparisons`` (all tables, all configurations against the reference):
    sets each ``p_adjusted`` and bases the verdicts on it. Returns the family's size m (1: nothing to correct)."""
    pairs = [(c.reference, d) for c in comparisons for d in c.differences]
    m = family_size([d.p_value for _, d in pairs])
    if m < 2:
        return m
    for (reference, d), adjusted in zip(pairs, holm([d.p_value for _, d in pairs])):
        d.p_adjusted = adjusted
        if not math.isnan(adjusted):
            d.verdict = _verdict(reference, d.other, d.diff, adjusted, f"{d.test}, Holm-adjusted over {m}", level)
    return m
