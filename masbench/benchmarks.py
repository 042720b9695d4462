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

from pydantic import (
    BaseModel,
    ConfigDict,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from masbench.errors import MasbenchError
from masbench.grid_optimizers import (
    check_baselines,
    check_lambda_schedules,
    mas_configs,
    mas_parts,
    merge_optimizer_args,
    optimizer_configs,
    resolve_optimizer_args,
)
from masbench.lambdas import complement, count_lambdas, count_text, parse_lambdas
from masbench.limits import STR_LIMITS, check_ranges, check_str, one_line, shown
from masbench.safe_yaml import load_yaml
from masbench.spec import RunSpec, make_spec

TEXT_BASELINES = ("adam", "sgd", "adamw")  # the paper's Table 3 adds AdamW for the text sets
IMAGE_BASELINES = ("adam", "sgd")
DEFAULT_MAX_CELLS = 10_000  # a sweep's cap unless raised (--max-cells): far above the paper's 98-cell tables
MAX_CELLS_CEILING = 100_000  # the cap's own ceiling: the cells are built in memory before the first one runs
MAX_PACK = 1024  # members per pack: far above what one device holds of the packable models
PACK_VALID = f"an integer of members per pack in [2, {MAX_PACK}], auto or off"


def parse_pack(value: Any, what: str = "pack") -> int | str:
    """A pack setting (``--pack``, ``pack:``): members per pack (N >= 2), ``auto`` or ``off``.

    Text from the command line (``"7"``) or a YAML value; YAML 1.1 reads ``pack: off`` as false, which
    is taken as ``off`` (``true`` is refused: it names no size).

    >>> parse_pack("7"), parse_pack("auto"), parse_pack(False)
    (7, 'auto', 'off')
    """
    if value is False:
        return "off"
    if isinstance(value, str):
        if value in ("auto", "off"):
            return value
        if value.isascii() and value.isdigit():
            value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 2 <= value <= MAX_PACK:
        return value
    raise ValueError(f"Invalid {what}: {shown(value)} ({PACK_VALID})")


class GridSpec(BaseModel):
    """One grid of a benchmark: a data set, its models, the lambdas, baselines and seeds, and shared settings.

    Numbers and switches are strict: ``epochs: true`` or ``lr: "1e-3"`` is refused, not read as 1 and
    0.001 (an integer may stand for a float).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str | None = None
    dataset: str = "digits"
    models: list[str] = ["mlp"]
    lambdas: str = "0.3..0.7"
    baselines: list[str] | None = None  # None: adam and sgd, plus adamw for text data
    optimizer_args: dict[str, dict[str, Any]] | None = None  # per baseline: its optimizer arguments
    lambda_schedule: str | list[str] | None = None  # MAS's: constant (the lambdas grid) and linear ones; None: constant
    seeds: StrictInt | None = None
    seed_list: list[StrictInt] | None = None
    data_dir: str | None = None
    pack: Any = "off"  # how a sweep trains the cells (parse_pack), not part of them
    # Everything else is a RunSpec field shared by the grid's cells.
    lr: StrictFloat | None = None
    lr_schedule: str | None = None
    momentum: StrictFloat | None = None
    dampening: StrictFloat | None = None
    nesterov: StrictBool | None = None
    weight_decay: StrictFloat | None = None
    betas: tuple[StrictFloat, StrictFloat] | None = None
    eps: StrictFloat | None = None
    amsgrad: StrictBool | None = None
    bias_correction: str | None = None
    batch_size: StrictInt | None = None
    epochs: StrictInt | None = None
    pretrained: str | None = None
    max_length: StrictInt | None = None
    text_column: str | None = None
    label_column: str | None = None
    test_file: str | None = None
    test_fraction: StrictFloat | None = None
    train_subset: StrictInt | None = None
    test_subset: StrictInt | None = None

    @field_validator("baselines")
    @classmethod
    def _resolve_baselines(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_baselines(value)

    @field_validator("optimizer_args")
    @classmethod
    def _resolve_optimizer_args(cls, value: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]] | None:
        return None if value is None else resolve_optimizer_args(value)

    @field_validator("lambda_schedule")
    @classmethod
    def _check_lambda_schedules(cls, value: str | list[str] | None) -> list[str] | None:
        return None if value is None else check_lambda_schedules(value)

    @model_validator(mode="after")
    def _check(self) -> GridSpec:
        check_ranges(self.model_dump(exclude_none=True))
        try:
            count_lambdas(self.lambdas)
        except MasbenchError as error:
            raise ValueError(str(error)) from None
        if not self.models:
            raise ValueError("Invalid models: the list is empty")
        object.__setattr__(self, "pack", parse_pack(self.pack))  # frozen: the normal form, 7, auto or off
        if self.seeds is not None and self.seed_list is not None:
            raise ValueError("Invalid seeds: give seeds (a count) or seed_list, not both")
        if self.seed_list is not None and not self.seed_list:
            raise ValueError("Invalid seed_list: [] (non-negative integers, at least one)")
        for name in ("models", "baselines", "seed_list"):
            values = getattr(self, name) or []
            twice = next((v for i, v in enumerate(values) if v in values[:i]), None)
            if twice is not None:  # a typo more often than a wish: said, not silently merged
                raise ValueError(f"Invalid {name}: {shown(values)} gives {shown(twice)} twice (give each once)")
        return self

    def seed_values(self) -> list[int]:
        if self.seed_list is not None:
            return list(dict.fromkeys(self.seed_list))
        return list(range(self.seeds or 1))

    def seed_count(self) -> int:
        return len(set(self.seed_list)) if self.seed_list is not None else self.seeds or 1

    def baseline_names(self, kind: str) -> list[str]:
        if self.baselines is not None:
            return list(self.baselines)
        return list(TEXT_BASELINES if kind == "text" else IMAGE_BASELINES)

    def cell_count(self) -> int:
        """models x (baselines + lambdas) x seeds, from the arithmetic: nothing is built (duplicates included)."""
        from masbench.data import dataset_kind

        grid, schedules = mas_parts(self.lambda_schedule)
        configs = len(self.baseline_names(dataset_kind(self.dataset))) + grid * count_lambdas(self.lambdas) + schedules
        return len(self.models) * configs * self.seed_count()

    def describe_count(self) -> str:
        from masbench.data import dataset_kind

        baselines = len(self.baseline_names(dataset_kind(self.dataset)))
        grid, schedules = mas_parts(self.lambda_schedule)
        lambdas = count_lambdas(self.lambdas) if grid else 0
        return (f"{len(self.models):,} model(s) x ({baselines} baseline(s) + {count_text(lambdas)} lambda(s)"
                + (f" + {schedules} lambda schedule(s)" if schedules else "")
                + f") x {self.seed_count():,} seed(s)")


RUN_FIELDS = ("lr", "lr_schedule", "momentum", "dampening", "nesterov", "weight_decay", "betas", "eps", "amsgrad",
              "bias_correction", "batch_size", "epochs", "pretrained", "max_length", "text_column", "label_column",
              "test_file", "test_fraction", "train_subset", "test_subset")


def _grid_configs(grid: GridSpec) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The settings every cell of ``grid`` shares, and its optimizer configurations: baselines, then MAS."""
    from masbench.data import dataset_kind

    shared = {name: getattr(grid, name) for name in RUN_FIELDS if getattr(grid, name) is not None}
    configs = optimizer_configs(grid.baseline_names(dataset_kind(grid.dataset)), grid.optimizer_args)
    lambdas = [dict(lambda_adam=lam, lambda_sgd=complement(lam))
               for lam in parse_lambdas(grid.lambdas, MAX_CELLS_CEILING)]
    return shared, configs + mas_configs(grid.lambda_schedule, lambdas)


def expand_grid(grid: GridSpec, benchmark: str | None, max_cells: int = MAX_CELLS_CEILING, *,
                data_base: Path | str | None = None) -> list[RunSpec]:
    """Every cell of ``grid``: model x (baselines, then MAS per lambda_adam) x seed, in that order.

    More than ``max_cells`` cells is an error, found from the count before any cell is made. Relative data
    paths are relative to ``data_base`` (default: the working directory); each is fingerprinted once.
    """
    _check_count(grid.cell_count(), max_cells, grid.describe_count(), repr(benchmark or grid.dataset))
    shared, configs = _grid_configs(grid)
    context = {"data_base": data_base, "fingerprints": {}}
    return [make_spec(context, benchmark=benchmark, dataset=grid.dataset, model=model, seed=seed, **shared, **config)
            for model in grid.models for config in configs for seed in grid.seed_values()]


def check_grid(grid: GridSpec, benchmark: str | None) -> None:
    """Validate ``grid`` by building one cell per model and optimizer, not the whole grid.

    The other cells differ only in lambda_adam (in [0, 1] by the grid's check) and the seed (in range by it),
    so they are valid when these are; a large grid in the file costs nothing until it is swept. Nor are its
    data read: their fingerprints are for the cells of a sweep, and a file may name data this machine lacks.
    """
    from masbench.data import dataset_kind

    shared = {name: getattr(grid, name) for name in RUN_FIELDS if getattr(grid, name) is not None}
    configs = optimizer_configs(grid.baseline_names(dataset_kind(grid.dataset)), grid.optimizer_args)
    configs += mas_configs(grid.lambda_schedule, [{}])
    seed = grid.seed_list[0] if grid.seed_list else 0
    context = {"identify_data": False}
    for model in grid.models:
        for config in configs:
            make_spec(context, benchmark=benchmark, dataset=grid.dataset, model=model, seed=seed, **shared, **config)


def _check_count(count: int, max_cells: int, detail: str, label: str) -> None:
    if count > max_cells:
        raise MasbenchError(
            f"sweep {label}: {count_text(count)} cells ({detail}), more than the cap of {max_cells:,}; narrow "
            f"--lambdas, --seeds or --models, or raise the cap with --max-cells (at most {MAX_CELLS_CEILING:,})"
        )


class BenchmarkSpec(BaseModel):
    """A named study: grid settings at the top, or a list of ``grids`` that inherit them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str | None = None
    grids: list[dict[str, Any]] | None = None
    settings: dict[str, Any] = {}

    def grid_specs(self) -> list[GridSpec]:
        if self.grids is None:
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
            raise MasbenchError(one_line(
                f"Unknown benchmark: {shown(name)} in {self.path} (valid: {', '.join(self.benchmarks)})"
            )) from None


def packaged_benchmarks() -> Path:
    return Path(__file__).resolve().parent / "benchmarks.yaml"


def default_benchmarks_path() -> Path:
    """``./benchmarks.yaml`` when present, else the copy installed with masbench."""
    local = Path("benchmarks.yaml")
    return local if local.is_file() else packaged_benchmarks()


def _resolve_paths(values: dict[str, Any], base: Path) -> dict[str, Any]:
    """A relative ``data_dir`` in a benchmarks file is relative to the file's folder.

    Relative data paths inside specs (``imagefolder:../x``, ``test_file``) stay as written, so that a
    cell's name is the same on every machine and its key too (the key knows the data by their content);
    they too resolve against the file's folder when the data are fingerprinted and loaded (``Cell.base_dir``).
    """
    out = dict(values)
    if isinstance(out.get("data_dir"), str) and not Path(out["data_dir"]).expanduser().is_absolute():
        out["data_dir"] = os.path.normpath(base / out["data_dir"])
    return out


def load_benchmarks(path: Path | str | None = None, check_specs: bool = True) -> BenchmarksFile:
    """Read and validate a benchmarks file; any problem is one line naming the file, benchmark and key.

    The file is read with ``BoundedLoader`` (no alias bombs, bounded size and nesting), and each grid is
    checked by building one cell per model and optimizer, so that loading takes time in proportion to
    the file, however many cells its grids hold. ``check_specs=False`` leaves that last check (which
    imports the registries, and torch with them) to ``check_benchmarks``: the grids' values, names and
    sizes are checked either way.
    """
    path = Path(path) if path is not None else default_benchmarks_path()
    if not path.is_file():
        raise MasbenchError(f"benchmarks file {path} does not exist")
    raw = load_yaml(path, "benchmarks file")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise MasbenchError(f"{path}: expected a mapping with 'defaults' and 'benchmarks' at the top")
    _string_keys(raw, str(path))
    unknown = sorted(set(raw) - {"defaults", "benchmarks"})
    if unknown:
        raise MasbenchError(one_line(f"{path}: unknown top-level key {shown(unknown[0])} (valid: defaults, benchmarks)"))
    defaults = raw.get("defaults") or {}
    entries = raw.get("benchmarks") or {}
    if not isinstance(defaults, dict) or not isinstance(entries, dict):
        raise MasbenchError(f"{path}: 'defaults' and 'benchmarks' must be mappings")
    _string_keys(defaults, f"{path}: defaults")
    _string_keys(entries, f"{path}: benchmarks")
    for name in entries:  # names reach messages and the store's VARCHAR: checked before any is used
        try:
            check_str("benchmark", name, STR_LIMITS["benchmark"])
        except ValueError as error:
            raise MasbenchError(one_line(f"{path}: benchmarks: {error}")) from None
    base = path.absolute().parent
    benchmarks = {name: _load_benchmark(entry, defaults, base, _where(path, name)) for name, entry in entries.items()}
    file = BenchmarksFile(path=path, defaults=defaults, benchmarks=benchmarks)
    if check_specs:
        check_benchmarks(file)
    return file


def _where(path: Path, name: str) -> str:
    return one_line(f"{path}: benchmark {shown(name)}")


def _load_benchmark(entry: Any, defaults: dict[str, Any], base: Path, where: str) -> BenchmarkSpec:
    if not isinstance(entry, dict):
        raise MasbenchError(f"{where}: expected a mapping of settings")
    _string_keys(entry, where)
    settings = {k: v for k, v in entry.items() if k not in ("description", "grids")}
    grids = entry.get("grids")
    if grids is not None:
        if not isinstance(grids, list) or not all(isinstance(g, dict) for g in grids):
            raise MasbenchError(f"{where}: 'grids' must be a list of mappings")
        if not grids:
            raise MasbenchError(f"{where}: 'grids' is empty (give one grid or more, or leave 'grids' out)")
        for i, grid in enumerate(grids):
            _string_keys(grid, f"{where}, grid {i + 1}")
    description = entry.get("description")
    if description is not None and not isinstance(description, str):
        raise MasbenchError(one_line(f"{where}, key 'description': {shown(description)} is invalid (expected text)"))
    spec = BenchmarkSpec(
        description=description,
        grids=[_resolve_paths(g, base) for g in grids] if grids is not None else None,
        settings=_resolve_paths({**defaults, **settings}, base),
    )
    for i, grid in enumerate(spec.grids or [None]):
        try:
            GridSpec(**spec.settings if grid is None else {**spec.settings, **grid})
        except ValidationError as error:
            raise MasbenchError(_grid_message(error, f"{where}, grid {i + 1}" if spec.grids else where)) from None
    return spec


def check_benchmarks(file: BenchmarksFile) -> None:
    """Check every grid of ``file`` by building one cell per model and optimizer (``check_grid``)."""
    for name, spec in file.benchmarks.items():
        where = _where(file.path, name)
        for i, grid in enumerate(spec.grid_specs()):
            try:
                check_grid(grid, name)
            except MasbenchError as error:
                label = f"{where}, grid {i + 1}" if spec.grids else where
                raise MasbenchError(one_line(f"{label}: {error}")) from None


def _string_keys(mapping: dict[Any, Any], where: str) -> None:
    for key in mapping:
        if not isinstance(key, str):
            raise MasbenchError(one_line(f"{where}: key {shown(key)} is not a name (keys are text: quote it)"))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


STRICT_TYPES = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false"}


def _grid_message(error: ValidationError, where: str) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return one_line(f"{where}: unknown key {shown(key)} (valid keys: {', '.join(GridSpec.model_fields)})")
    if first["type"] == "value_error" or not key:
        return one_line(f"{where}: {message}")
    if first["type"] in STRICT_TYPES:
        value = first.get("input")
        kind = {bool: "a boolean, ", str: "text, "}.get(type(value), "")
        fix = " (write it without quotes)" if isinstance(value, str) and _is_number(value) else ""
        return one_line(f"{where}, key {shown(key)}: {shown(value)} is {kind}not {STRICT_TYPES[first['type']]}{fix}")
    return one_line(f"{where}, key {shown(key)}: {shown(first.get('input'))} is invalid ({message})")


@dataclass(frozen=True)
class Cell:
    """A cell of a sweep: its spec, where its data lives (``None``: the run's default data directory), and
    the folder that relative data paths in its spec are relative to (the benchmarks file's for paths
    written there, the working directory for paths typed on the command line)."""

    spec: RunSpec
    data_dir: str | None = None
    base_dir: str | None = None
    pack: int | str = "off"  # its grid's pack setting (parse_pack): members per pack, auto or off


def plan_sweep(
    *,
    benchmark: str | None = None,
    dataset: str | None = None,
    overrides: dict[str, Any] | None = None,
    benchmarks_path: Path | str | None = None,
    max_cells: int = DEFAULT_MAX_CELLS,
) -> tuple[str | None, list[Cell]]:
    """The cells of a sweep: a benchmark from the benchmarks file, with command-line ``overrides`` on top.

    ``dataset`` alone picks the benchmark of that name when the file has one (``--dataset cifar100``
    runs the paper's CIFAR-100 settings), else a grid built from the file's defaults and the flags.
    With a benchmark of several grids, ``dataset`` keeps the grids of that data set; with one grid it
    replaces its data set. More than ``max_cells`` cells (at most ``MAX_CELLS_CEILING``) is an error,
    counted from the grids' arithmetic before any cell is built.
    """
    if isinstance(max_cells, bool) or not 1 <= max_cells <= MAX_CELLS_CEILING:
        raise MasbenchError(f"Invalid --max-cells: {shown(max_cells)} (must be in [1, {MAX_CELLS_CEILING:,}])")
    label = shown(benchmark or dataset)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    try:  # the flags' own values first: they need neither the file nor the registries (and their imports)
        check_ranges(overrides)
        if isinstance(overrides.get("lambdas"), str):
            count_lambdas(overrides["lambdas"])
    except (ValueError, MasbenchError) as error:
        raise MasbenchError(one_line(f"sweep {label}: {error}")) from None
    file = load_benchmarks(benchmarks_path, check_specs=False)  # the count first: it needs no torch
    if benchmark is None and dataset is None:
        raise MasbenchError(f"give --benchmark NAME (in {file.path}: {', '.join(file.benchmarks)}) or --dataset NAME")
    if benchmark is None and dataset in file.benchmarks:
        benchmark = dataset
    grids = _sweep_grids(file, benchmark, dataset, overrides, label)
    total = sum(grid.cell_count() for grid, _ in grids)
    _check_count(total, max_cells, " + ".join(grid.describe_count() for grid, _ in grids[:3]), label)
    check_benchmarks(file)
    cells = [Cell(spec, grid.data_dir, str(base), grid.pack)
             for grid, base in grids for spec in expand_grid(grid, benchmark, data_base=base)]
    unique = list({cell.spec.key: cell for cell in cells}.values())
    return benchmark, unique


def _sweep_grids(file: BenchmarksFile, benchmark: str | None, dataset: str | None,
                 overrides: dict[str, Any] | None, label: str) -> list[tuple[GridSpec, Path]]:
    """The sweep's grids, validated, with the command line's ``overrides`` applied, and each one's data base."""
    overrides = dict(overrides or {})
    dataset_typed = True  # the data set is the command line's, unless --dataset only picks the file's grids
    if benchmark is not None:
        entry = file.get(benchmark)
        grids = [g.model_dump(exclude_unset=True) for g in entry.grid_specs()]
        dataset_typed = dataset is not None and len(grids) == 1
        if dataset is not None:
            if len(grids) == 1:
                grids[0]["dataset"] = dataset
            else:
                grids = [g for g in grids if g.get("dataset") == dataset]
                if not grids:
                    datasets = ", ".join(g.dataset for g in entry.grid_specs())
                    raise MasbenchError(one_line(f"benchmark {shown(benchmark)} has no grid for dataset "
                                                 f"{shown(dataset)} (its data sets: {datasets})"))
    else:
        grids = [dict(file.defaults, dataset=dataset)]
    if "seeds" in overrides:
        overrides.pop("seed_list", None)
    typed = ({"test_file"} & set(overrides)) | ({"dataset"} if dataset_typed else set())
    specs = []
    for values in grids:
        if "seeds" in overrides or "seed_list" in overrides:
            values.pop("seeds", None)
            values.pop("seed_list", None)
        flagged = {**values, **overrides}
        if "optimizer_args" in overrides and isinstance(values.get("optimizer_args"), dict):
            # Per optimizer: the flags' arguments replace the file's; the file's for other optimizers stay.
            flagged["optimizer_args"] = merge_optimizer_args(values.get("optimizer_args"), overrides["optimizer_args"])
        values, base = _data_base(flagged, typed, file.path.absolute().parent)
        try:
            specs.append((GridSpec(**values), base))
        except ValidationError as error:
            raise MasbenchError(_grid_message(error, f"sweep {label}")) from None
    return specs


def _data_base(values: dict[str, Any], typed: set[str], file_base: Path) -> tuple[dict[str, Any], Path]:
    """The folder a grid's relative data paths are relative to, and its values.

    Paths written in the benchmarks file are relative to its folder; paths typed on the command line
    (``typed``: ``dataset``, ``test_file``) to the working directory, as ``masbench run``'s are, so that both
    commands make the same cell of them. A grid holding both kinds gets its typed paths made absolute.
    """
    from masbench.data import PARAMETRIC
    from masbench.data.identity import under

    dataset = values.get("dataset")
    prefix, sep, path = dataset.partition(":") if isinstance(dataset, str) else ("", "", "")
    paths = {"dataset": path if sep and prefix in PARAMETRIC else None, "test_file": values.get("test_file")}
    relative = {key for key, path in paths.items()
                if isinstance(path, str) and path and not Path(path).expanduser().is_absolute()}
    if not relative & typed:
        return values, file_base
    if relative <= typed:
        return values, Path.cwd()
    values = dict(values)
    for key in relative & typed:
        absolute = under(Path.cwd(), paths[key])
        values[key] = absolute if key == "test_file" else f"{prefix}:{absolute}"
    return values, file_base
