"""Run specifications: what defines a cell, its canonical name and its key.

A ``RunSpec`` is frozen and rejects unknown keys. Everything that changes the
numbers a run produces is in it (dataset, model, optimizer and its
hyperparameters, batch size, epochs, seed, data options); how it is executed
(device, data directory, mixed precision, checkpoints) is in ``ExecOptions``.

``spec.key`` hashes the canonical form of a spec: only the fields that matter
for its optimizer and data, with defaults resolved, so that the same cell gets
the same key however it was written. ``spec.name`` is the run's readable name,
``mas[lambda_adam=0.3,lambda_sgd=0.7,lr=0.001]``, keys sorted.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from masbench.errors import MasbenchError

ENDPOINT_LAMBDAS = {"adam": (1.0, 0.0), "adamw": (1.0, 0.0), "sgd": (0.0, 1.0)}


class RunSpec(BaseModel):
    """One cell: optimizer x lambda x model x dataset x seed, and everything else that sets its numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    benchmark: str | None = None
    dataset: str = "digits"
    model: str = "mlp"
    optimizer: str = "mas"
    lr: float = 1e-3
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: float | None = None  # None: the optimizer's own default (AdamW's is 0.01)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    amsgrad: bool = False
    lambda_adam: float = 0.5
    lambda_sgd: float = 0.5
    bias_correction: str = "step"
    lambda_schedule: str = "constant"
    batch_size: int = 128
    epochs: int = 10
    seed: int = 0
    pretrained: str | None = None  # text models; None: bert-base-uncased
    max_length: int = 128
    text_column: str | None = None
    label_column: str | None = None
    test_file: str | None = None
    test_fraction: float = 0.2
    train_subset: int | None = None
    test_subset: int | None = None

    @model_validator(mode="after")
    def _check(self) -> RunSpec:
        from masbench.data import dataset_kind
        from masbench.models import model_entry
        from masbench.optim import OPTIMIZERS, parse_lambda_schedule
        from masbench.optim.functional import BIAS_CORRECTIONS

        try:
            kind = dataset_kind(self.dataset)
            entry = model_entry(self.model)
        except MasbenchError as error:
            raise ValueError(str(error)) from None
        if entry.kind != kind:
            raise ValueError(f"Invalid model {self.model!r} for dataset {self.dataset!r}: it takes {entry.kind} data, "
                             f"the dataset is {kind}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Unknown optimizer: {self.optimizer!r} (valid: {', '.join(sorted(OPTIMIZERS))})")
        _at_least(0, lr=self.lr, momentum=self.momentum, dampening=self.dampening, eps=self.eps,
                  lambda_adam=self.lambda_adam, lambda_sgd=self.lambda_sgd)
        if self.weight_decay is not None:
            _at_least(0, weight_decay=self.weight_decay)
        _at_least(1, batch_size=self.batch_size, epochs=self.epochs, max_length=self.max_length)
        _at_least(0, seed=self.seed)
        for name in ("train_subset", "test_subset"):
            if getattr(self, name) is not None:
                _at_least(1, **{name: getattr(self, name)})
        for i, beta in enumerate(self.betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid betas[{i}]: {beta} (must be in [0, 1))")
        if self.nesterov and self.optimizer in ("mas", "sgd") and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(f"Invalid nesterov: it needs momentum > 0 and dampening = 0 "
                             f"(got momentum={self.momentum}, dampening={self.dampening})")
        if self.bias_correction not in BIAS_CORRECTIONS:
            raise ValueError(f"Invalid bias_correction: {self.bias_correction!r} (valid: {', '.join(BIAS_CORRECTIONS)})")
        kind_, _ = parse_lambda_schedule(self.lambda_schedule)
        if kind_ != "constant" and self.optimizer != "mas":
            raise ValueError(f"Invalid lambda_schedule {self.lambda_schedule!r} for optimizer {self.optimizer!r}: "
                             f"only mas has lambdas")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"Invalid test_fraction: {self.test_fraction} (must be in (0, 1))")
        return self

    # --- derived views -----------------------------------------------------------------------

    @property
    def kind(self) -> str:
        from masbench.data import dataset_kind

        return dataset_kind(self.dataset)

    @property
    def lambdas(self) -> tuple[float, float]:
        """(lambda_adam, lambda_sgd) as the optimizer uses them: fixed at the endpoints for the baselines."""
        return ENDPOINT_LAMBDAS.get(self.optimizer, (self.lambda_adam, self.lambda_sgd))

    @property
    def resolved_pretrained(self) -> str | None:
        from masbench.models import DEFAULT_PRETRAINED

        return (self.pretrained or DEFAULT_PRETRAINED) if self.kind == "text" else None

    def optimizer_hparams(self) -> dict[str, Any]:
        """The keyword arguments for ``build_optimizer(self.optimizer, ...)``, defaults resolved."""
        from masbench.optim import optimizer_defaults, select_hyperparameters

        values = self.model_dump()
        if self.weight_decay is None:
            values["weight_decay"] = float(optimizer_defaults(self.optimizer).get("weight_decay", 0.0))
        hparams = select_hyperparameters(self.optimizer, values)
        hparams.pop("foreach", None)
        hparams.pop("fused", None)
        return hparams

    def data_options(self) -> dict[str, Any]:
        """The keyword arguments for ``load_dataset`` that matter for this dataset."""
        options: dict[str, Any] = {}
        if self.kind == "text":
            options.update(pretrained=self.resolved_pretrained, max_length=self.max_length)
        if self.dataset.startswith("csv:"):
            options.update(text_column=self.text_column, label_column=self.label_column, test_file=self.test_file)
            if self.test_file is None:
                options["test_fraction"] = self.test_fraction
        if self.train_subset is not None:
            options["train_subset"] = self.train_subset
        if self.test_subset is not None:
            options["test_subset"] = self.test_subset
        return options

    def canonical(self) -> dict[str, Any]:
        """The fields that define this cell, and nothing else: the input of ``key``."""
        out: dict[str, Any] = dict(
            benchmark=self.benchmark, dataset=self.dataset, model=self.model, optimizer=self.optimizer,
            batch_size=self.batch_size, epochs=self.epochs, seed=self.seed,
        )
        out.update({k: list(v) if isinstance(v, tuple) else v for k, v in self.optimizer_hparams().items()})
        if self.optimizer == "mas":
            out["lambda_schedule"] = self.lambda_schedule
        out.update(self.data_options())
        return out

    @property
    def key(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    @property
    def name(self) -> str:
        """``optimizer[k=v,...]``: lr, and the hyperparameters that differ from the optimizer's defaults, keys sorted.

        MAS always shows its lambdas; a lambda schedule shows instead of them.
        """
        from masbench.optim import optimizer_defaults

        defaults = optimizer_defaults(self.optimizer)
        shown = {}
        for k, v in self.optimizer_hparams().items():
            if self.optimizer == "mas" and k in ("lambda_adam", "lambda_sgd"):
                if self.lambda_schedule == "constant":
                    shown[k] = v
            elif k == "lr" or k not in defaults or defaults[k] != v:
                shown[k] = v
        if self.optimizer == "mas" and self.lambda_schedule != "constant":
            shown["lambda_schedule"] = self.lambda_schedule
        inner = ",".join(f"{k}={_format(shown[k])}" for k in sorted(shown))
        return f"{self.optimizer}[{inner}]"

    def describe(self) -> str:
        """One line for messages: the name, the data, the model and the seed."""
        return f"{self.name} on {self.dataset}/{self.model} seed {self.seed}"


def _format(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "/".join(_format(v) for v in value)
    return repr(value) if isinstance(value, str) else str(value)


def _at_least(bound: float, **values: float) -> None:
    for name, value in values.items():
        if not value >= bound:
            raise ValueError(f"Invalid {name}: {value} (must be >= {bound})")


def make_spec(**values: Any) -> RunSpec:
    """``RunSpec(**values)``, with a one-line ``MasbenchError`` naming the value instead of pydantic's report."""
    try:
        return RunSpec(**values)
    except ValidationError as error:
        raise MasbenchError(validation_message(error)) from None


def validation_message(error: ValidationError, where: str = "") -> str:
    """The first problem of a pydantic error, as one line that names the key and the value."""
    first = error.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    location = ".".join(str(part) for part in first["loc"])
    prefix = f"{where}: " if where else ""
    if first["type"] == "value_error" or not location:
        return f"{prefix}{message}"
    if first["type"] == "extra_forbidden":
        return f"{prefix}unknown key {location!r} (see --help for the valid options)"
    return f"{prefix}invalid {location}: {first.get('input')!r} ({message})"


@dataclass(frozen=True)
class ExecOptions:
    """How a run is executed; none of it enters the run's key.

    ``amp`` (bf16 autocast) and ``channels_last`` default to on with CUDA and off elsewhere.
    """

    device: str = "auto"
    data_dir: Path | None = None
    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool = False
    checkpoint_dir: Path = field(default_factory=lambda: Path(".masbench") / "checkpoints")
    keep_checkpoint: bool = False
    base_dir: Path | None = None  # what relative data paths in a spec are relative to (default: the working directory)
    distributed: Any = None  # a masbench.distributed.Distributed under torchrun, else None


# --- sweeps: grids, lambda ranges, benchmarks.yaml ----------------------------------------------------

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
