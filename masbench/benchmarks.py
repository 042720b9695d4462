"""The benchmarks file and sweep grids: ``benchmarks.yaml`` -> benchmarks -> grids -> cells (run specs).

A benchmark is a named study with grid settings at the top, or several ``grids``
that inherit them. ``plan_sweep`` turns a benchmark (or a data set) and the
command line's overrides into the sweep's cells; values given on the command
line override the file's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from masbench.errors import MasbenchError
from masbench.spec import RunSpec, make_spec

BASELINES = ("adam", "sgd", "adamw")
TEXT_BASELINES = ("adam", "sgd", "adamw")  # the paper's Table 3 adds AdamW for the text sets
IMAGE_BASELINES = ("adam", "sgd")


def parse_lambdas(text: str) -> list[float]:
    """lambda_adam values: ``0.3..0.7`` (step 0.1, inclusive), ``0.3..0.7:0.05``, or ``0.3,0.5,0.7``.

    Decimal arithmetic keeps 0.3 + 0.1 at 0.4. Every value must lie in [0, 1], so that
    lambda_sgd = 1 - lambda_adam is a valid weight too.
    """
    from decimal import Decimal, InvalidOperation

    valid = "valid: START..END (step 0.1), START..END:STEP, or A,B,C, with values in [0, 1], e.g. 0.3..0.7"
    text = text.strip()
    try:
        if ".." in text:
            start_text, _, rest = text.partition("..")
            end_text, _, step_text = rest.partition(":")
            start, end = Decimal(start_text), Decimal(end_text)
            step = Decimal(step_text) if step_text else Decimal("0.1")
            if step <= 0:
                raise MasbenchError(f"Invalid lambda range {text!r}: the step must be > 0 ({valid})")
            if start > end:
                raise MasbenchError(f"Invalid lambda range {text!r}: start {start} is above end {end} ({valid})")
            values, value = [], start
            while value <= end:
                values.append(value)
                value += step
        else:
            values = [Decimal(part) for part in text.split(",")]
    except (InvalidOperation, ValueError):
        raise MasbenchError(f"Invalid lambdas {text!r} ({valid})") from None
    if not values or any(not v.is_finite() for v in values):
        raise MasbenchError(f"Invalid lambdas {text!r} ({valid})")
    for v in values:
        if not Decimal(0) <= v <= Decimal(1):
            raise MasbenchError(f"Invalid lambda_adam {v} in {text!r}: must be in [0, 1] so that lambda_sgd = 1 - it is too")
    return [float(v) for v in dict.fromkeys(values)]


def complement(lambda_adam: float) -> float:
    """1 - lambda_adam without binary noise (1 - 0.7 is 0.30000000000000004 in floats)."""
    from decimal import Decimal

    return float(Decimal(1) - Decimal(repr(lambda_adam)))


class GridSpec(BaseModel):
    """One grid of a benchmark: a data set, its models, the lambdas, baselines and seeds, and shared settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str | None = None
    dataset: str = "digits"
    models: list[str] = ["mlp"]
    lambdas: str = "0.3..0.7"
    baselines: list[str] | None = None  # None: adam and sgd, plus adamw for text data
    seeds: int | None = None
    seed_list: list[int] | None = None
    data_dir: str | None = None
    # Everything else is a RunSpec field shared by the grid's cells.
    lr: float | None = None
    momentum: float | None = None
    dampening: float | None = None
    nesterov: bool | None = None
    weight_decay: float | None = None
    betas: tuple[float, float] | None = None
    eps: float | None = None
    amsgrad: bool | None = None
    bias_correction: str | None = None
    batch_size: int | None = None
    epochs: int | None = None
    pretrained: str | None = None
    max_length: int | None = None
    text_column: str | None = None
    label_column: str | None = None
    test_file: str | None = None
    test_fraction: float | None = None
    train_subset: int | None = None
    test_subset: int | None = None

    @model_validator(mode="after")
    def _check(self) -> GridSpec:
        try:
            parse_lambdas(self.lambdas)
        except MasbenchError as error:
            raise ValueError(str(error)) from None
        if not self.models:
            raise ValueError("Invalid models: the list is empty")
        for name in self.baselines or ():
            if name not in BASELINES:
                raise ValueError(f"Unknown baseline: {name!r} (valid: {', '.join(BASELINES)})")
        if self.seeds is not None and self.seeds < 1:
            raise ValueError(f"Invalid seeds: {self.seeds} (must be >= 1)")
        if self.seeds is not None and self.seed_list is not None:
            raise ValueError("Invalid seeds: give seeds (a count) or seed_list, not both")
        if self.seed_list is not None and (not self.seed_list or min(self.seed_list) < 0):
            raise ValueError(f"Invalid seed_list: {self.seed_list} (non-negative integers, at least one)")
        return self

    def seed_values(self) -> list[int]:
        if self.seed_list is not None:
            return list(dict.fromkeys(self.seed_list))
        return list(range(self.seeds or 1))

    def baseline_names(self, kind: str) -> list[str]:
        if self.baselines is not None:
            return list(self.baselines)
        return list(TEXT_BASELINES if kind == "text" else IMAGE_BASELINES)


RUN_FIELDS = ("lr", "momentum", "dampening", "nesterov", "weight_decay", "betas", "eps", "amsgrad", "bias_correction",
              "batch_size", "epochs", "pretrained", "max_length", "text_column", "label_column", "test_file",
              "test_fraction", "train_subset", "test_subset")


def expand_grid(grid: GridSpec, benchmark: str | None) -> list[RunSpec]:
    """Every cell of ``grid``: model x (baselines, then MAS per lambda_adam) x seed, in that order."""
    from masbench.data import dataset_kind

    shared = {name: getattr(grid, name) for name in RUN_FIELDS if getattr(grid, name) is not None}
    kind = dataset_kind(grid.dataset)
    configs = [dict(optimizer=name) for name in grid.baseline_names(kind)]
    configs += [dict(optimizer="mas", lambda_adam=lam, lambda_sgd=complement(lam)) for lam in parse_lambdas(grid.lambdas)]
    cells = []
    for model in grid.models:
        for config in configs:
            for seed in grid.seed_values():
                cells.append(make_spec(benchmark=benchmark, dataset=grid.dataset, model=model, seed=seed,
                                       **shared, **config))
    return cells


class BenchmarkSpec(BaseModel):
    """A named study: grid settings at the top, or a list of ``grids`` that inherit them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str | None = None
    grids: list[dict[str, Any]] | None = None
    settings: dict[str, Any] = {}

    def grid_specs(self) -> list[GridSpec]:
        if not self.grids:
            return [GridSpec(**self.settings)]
        return [GridSpec(**{**self.settings, **grid}) for grid in self.grids]


class BenchmarksFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path
    defaults: dict[str, Any] = {}
    benchmarks: dict[str, BenchmarkSpec] = {}

    def get(self, name: str) -> BenchmarkSpec:
        try:
            return self.benchmarks[name]
        except KeyError:
            raise MasbenchError(
                f"Unknown benchmark: {name!r} in {self.path} (valid: {', '.join(self.benchmarks)})"
            ) from None


def packaged_benchmarks() -> Path:
    return Path(__file__).resolve().parent / "benchmarks.yaml"


def default_benchmarks_path() -> Path:
    """``./benchmarks.yaml`` when present, else the copy installed with masbench."""
    local = Path("benchmarks.yaml")
    return local if local.is_file() else packaged_benchmarks()


def _resolve_paths(values: dict[str, Any], base: Path) -> dict[str, Any]:
    """A relative ``data_dir`` in a benchmarks file is relative to the file's folder.

    Relative data paths inside specs (``imagefolder:../x``, ``test_file``) stay as written, so that a
    cell's key and name are the same on every machine; they too resolve against the file's folder
    when the data are loaded (``Cell.base_dir``).
    """
    out = dict(values)
    if isinstance(out.get("data_dir"), str) and not Path(out["data_dir"]).expanduser().is_absolute():
        out["data_dir"] = os.path.normpath(base / out["data_dir"])
    return out


def load_benchmarks(path: Path | str | None = None) -> BenchmarksFile:
    """Read and validate a benchmarks file; any problem is one line naming the file, benchmark and key."""
    import yaml

    path = Path(path) if path is not None else default_benchmarks_path()
    if not path.is_file():
        raise MasbenchError(f"benchmarks file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise MasbenchError(f"{path}: YAML syntax error{where}: {' '.join(str(problem).split())}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise MasbenchError(f"{path}: expected a mapping with 'defaults' and 'benchmarks' at the top")
    unknown = sorted(set(raw) - {"defaults", "benchmarks"})
    if unknown:
        raise MasbenchError(f"{path}: unknown top-level key {unknown[0]!r} (valid: defaults, benchmarks)")
    defaults = raw.get("defaults") or {}
    entries = raw.get("benchmarks") or {}
    if not isinstance(defaults, dict) or not isinstance(entries, dict):
        raise MasbenchError(f"{path}: 'defaults' and 'benchmarks' must be mappings")
    base = path.absolute().parent
    benchmarks = {}
    for name, entry in entries.items():
        where = f"{path}: benchmark {name!r}"
        if not isinstance(entry, dict):
            raise MasbenchError(f"{where}: expected a mapping of settings")
        settings = {k: v for k, v in entry.items() if k not in ("description", "grids")}
        grids = entry.get("grids")
        if grids is not None and (not isinstance(grids, list) or not all(isinstance(g, dict) for g in grids)):
            raise MasbenchError(f"{where}: 'grids' must be a list of mappings")
        spec = BenchmarkSpec(
            description=entry.get("description"),
            grids=[_resolve_paths(g, base) for g in grids] if grids else None,
            settings=_resolve_paths({**defaults, **settings}, base),
        )
        for i, _ in enumerate(spec.grids or [None]):
            label = f"{where}, grid {i + 1}" if spec.grids else where
            try:
                grid = spec.grid_specs()[i]
                expand_grid(grid, name)
            except ValidationError as error:
                raise MasbenchError(_grid_message(error, label)) from None
            except MasbenchError as error:
                raise MasbenchError(f"{label}: {error}") from None
        benchmarks[name] = spec
    return BenchmarksFile(path=path, defaults=defaults, benchmarks=benchmarks)


def _grid_message(error: ValidationError, where: str) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"{where}: unknown key {key!r} (valid keys: {', '.join(GridSpec.model_fields)})"
    if first["type"] == "value_error" or not key:
        return f"{where}: {message}"
    return f"{where}, key {key!r}: {first.get('input')!r} is invalid ({message})"


@dataclass(frozen=True)
class Cell:
    """A cell of a sweep: its spec, where its data lives (``None``: the run's default data directory), and
    the folder that relative data paths in its spec are relative to (the benchmarks file's)."""

    spec: RunSpec
    data_dir: str | None = None
    base_dir: str | None = None


def plan_sweep(
    *,
    benchmark: str | None = None,
    dataset: str | None = None,
    overrides: dict[str, Any] | None = None,
    benchmarks_path: Path | str | None = None,
) -> tuple[str | None, list[Cell]]:
    """The cells of a sweep: a benchmark from the benchmarks file, with command-line ``overrides`` on top.

    ``dataset`` alone picks the benchmark of that name when the file has one (``--dataset cifar100``
    runs the paper's CIFAR-100 settings), else a grid built from the file's defaults and the flags.
    With a benchmark of several grids, ``dataset`` keeps the grids of that data set; with one grid it
    replaces its data set.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    file = load_benchmarks(benchmarks_path)
    if benchmark is None and dataset is None:
        raise MasbenchError(f"give --benchmark NAME (in {file.path}: {', '.join(file.benchmarks)}) or --dataset NAME")
    if benchmark is None and dataset in file.benchmarks:
        benchmark = dataset
    if benchmark is not None:
        entry = file.get(benchmark)
        grids = [g.model_dump(exclude_unset=True) for g in entry.grid_specs()]
        if dataset is not None:
            if len(grids) == 1:
                grids[0]["dataset"] = dataset
            else:
                grids = [g for g in grids if g.get("dataset") == dataset]
                if not grids:
                    datasets = ", ".join(g.dataset for g in entry.grid_specs())
                    raise MasbenchError(f"benchmark {benchmark!r} has no grid for dataset {dataset!r} (its data sets: {datasets})")
    else:
        grids = [dict(file.defaults, dataset=dataset)]
    if "seeds" in overrides:
        overrides.pop("seed_list", None)
    cells: list[Cell] = []
    for values in grids:
        if "seeds" in overrides or "seed_list" in overrides:
            values.pop("seeds", None)
            values.pop("seed_list", None)
        values.update(overrides)
        try:
            grid = GridSpec(**values)
        except ValidationError as error:
            raise MasbenchError(_grid_message(error, f"sweep {benchmark or dataset!r}")) from None
        cells += [Cell(spec, grid.data_dir, str(file.path.absolute().parent)) for spec in expand_grid(grid, benchmark)]
    unique = list({cell.spec.key: cell for cell in cells}.values())
    return benchmark, unique
