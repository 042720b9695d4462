"""The benchmarks file: ``benchmarks.yaml`` -> benchmarks -> grids -> cells (run specs).

A benchmark is a named study with grid settings at the top, or several ``grids``
that inherit them. ``plan_sweep`` turns a benchmark (or a data set) and the
command line's overrides into the sweep's cells; values given on the command
line override the file's. The grids themselves (``GridSpec``, counting and
expansion) live in ``masbench.grid.grids``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from masbench.errors import MasbenchError
from masbench.grid.optimizers import merge_optimizer_args
from masbench.grid.grids import (
    DEFAULT_MAX_CELLS,
    MAX_CELLS_CEILING,
    GridSpec,
    check_count,
    check_grid,
    check_setting_names,
    expand_grid,
    grid_message,
)
from masbench.grid.lambdas import count_lambdas
from masbench.text.numbers import is_percent_target, percent_meant
from masbench.grid.safe_yaml import load_yaml
from masbench.grid.settings import layer_settings
from masbench.spec import RunSpec
from masbench.text.limits import STR_LIMITS, check_ranges, check_str
from masbench.text.paths import check_file
from masbench.text.shown import one_line, shown

__all__ = ["BenchmarkSpec", "BenchmarksFile", "Cell", "check_benchmarks", "default_benchmarks_path", "load_benchmarks",
           "packaged_benchmarks", "plan_grids", "plan_sweep", "read_targets"]


class BenchmarkSpec(BaseModel):
    """A named study: grid settings at the top, or a list of ``grids`` that inherit them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str | None = None
    grids: list[dict[str, Any]] | None = None
    settings: dict[str, Any] = {}

    def grid_specs(self) -> list[GridSpec]:
        if self.grids is None:
            return [GridSpec(**self.settings)]
        return [GridSpec(**layer_settings(self.settings, grid)) for grid in self.grids]


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
    return Path(__file__).resolve().parent.parent / "benchmarks.yaml"


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
    path = check_file(path if path is not None else default_benchmarks_path(), "benchmarks file")
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


def read_targets(path: Path | str) -> dict[tuple[str, str, str], float]:
    """``(benchmark, dataset, model) -> target`` of the file's ``target:`` keys, read without validating the file.

    For the commands that only read (``report``, ``plot``): the YAML alone is read, with the safe loader, and
    each grid's ``dataset``, ``models`` and ``target`` are picked (a grid's over its benchmark's over the
    ``defaults``, as ``load_benchmarks`` layers them; ``GridSpec``'s defaults otherwise). Nothing it names is
    imported or checked. A file that does not give them plainly is a ``MasbenchError`` naming it.

    Example: ``benchmarks: {b: {dataset: digits, models: [mlp], target: 90}}`` gives ``{('b', 'digits', 'mlp'): 90.0}``.
    """
    path = check_file(path, "benchmarks file")
    raw = load_yaml(path, "benchmarks file") or {}
    defaults = raw.get("defaults") or {} if isinstance(raw, dict) else None
    entries = raw.get("benchmarks") or {} if isinstance(raw, dict) else None
    if not isinstance(defaults, dict) or not isinstance(entries, dict):
        raise MasbenchError(f"{path}: expected a mapping with 'defaults' and 'benchmarks' mappings at the top")
    out: dict[tuple[str, str, str], float] = {}
    for name, entry in entries.items():
        entry = entry if isinstance(entry, dict) else {}
        grids = entry.get("grids")
        for grid in grids if isinstance(grids, list) and grids else [{}]:
            picked = {key: next((layer[key] for layer in (grid, entry, defaults)
                                 if isinstance(layer, dict) and key in layer), GridSpec.model_fields[key].default)
                      for key in ("dataset", "models", "target")}
            target, dataset, models = picked["target"], picked["dataset"], picked["models"]
            if target is None:
                continue
            where = _where(path, str(name))
            if not is_percent_target(target):
                meant = percent_meant(target)
                hint = f": did you mean {meant:g}?" if meant is not None else ""
                raise MasbenchError(one_line(f"{where}: target {shown(target)} is not a test accuracy in percent "
                                             f"in [1, 100]{hint}"))
            if not isinstance(dataset, str) or not isinstance(models, list) \
                    or not all(isinstance(model, str) for model in models):
                raise MasbenchError(one_line(f"{where}: its dataset and models are not names"))
            for model in models:
                key = (str(name), dataset, model)
                if out.get(key, target) != target:
                    raise MasbenchError(one_line(f"{where} gives {dataset}/{model} two targets ({out[key]:g} and "
                                                 f"{target:g}); give one"))
                out[key] = float(target)
    return out


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
    try:  # a value per optimizer keeps, for the others, the value it goes over (masbench.grid.settings.layer)
        settings = layer_settings(defaults, settings)
    except ValueError as error:
        raise MasbenchError(one_line(f"{where}: {error}")) from None
    spec = BenchmarkSpec(
        description=description,
        grids=[_resolve_paths(g, base) for g in grids] if grids is not None else None,
        settings=_resolve_paths(settings, base),
    )
    for i, grid in enumerate(spec.grids or [None]):
        label = f"{where}, grid {i + 1}" if spec.grids else where
        try:
            GridSpec(**spec.settings if grid is None else layer_settings(spec.settings, grid))
        except ValidationError as error:
            raise MasbenchError(grid_message(error, label)) from None
        except ValueError as error:  # layer_settings's
            raise MasbenchError(one_line(f"{label}: {error}")) from None
    try:
        check_setting_names(spec.grid_specs(), "benchmark")
    except MasbenchError as error:
        raise MasbenchError(one_line(f"{where}: {error}")) from None
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


@dataclass(frozen=True)
class Cell:
    """A cell of a sweep: its spec, where its data lives (``None``: the run's default data directory), and
    the folder that relative data paths in its spec are relative to (the benchmarks file's for paths
    written there, the working directory for paths typed on the command line)."""

    spec: RunSpec
    data_dir: str | None = None
    base_dir: str | None = None
    pack: int | str = "off"  # its grid's pack setting (parse_pack): members per pack, auto or off
    until_ci: float | None = None  # its grid's adaptive seeds (masbench.sweep.adaptive): the CI95 half-width to reach
    max_seeds: int | None = None  # and the most seeds its cell may have


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
    benchmark, grids = plan_grids(benchmark=benchmark, dataset=dataset, overrides=overrides,
                                  benchmarks_path=benchmarks_path, max_cells=max_cells)
    cells = [Cell(spec, grid.data_dir, str(base), grid.pack, grid.until_ci, grid.max_seeds)
             for grid, base in grids for spec in expand_grid(grid, benchmark, data_base=base)]
    unique = list({cell.spec.key: cell for cell in cells}.values())
    return benchmark, unique


def plan_grids(
    *,
    benchmark: str | None = None,
    dataset: str | None = None,
    overrides: dict[str, Any] | None = None,
    benchmarks_path: Path | str | None = None,
    max_cells: int = DEFAULT_MAX_CELLS,
) -> tuple[str | None, list[tuple[GridSpec, Path]]]:
    """The grids of a sweep (``plan_sweep``) or a tune, validated, with the overrides applied, each with the
    folder its relative data paths are relative to; the benchmark's name (``dataset`` may pick it)."""
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
    try:
        check_setting_names([grid for grid, _ in grids], "sweep", given=overrides)
    except MasbenchError as error:
        raise MasbenchError(one_line(f"sweep {label}: {error}")) from None
    total = sum(grid.cell_count() for grid, _ in grids)
    check_count(total, max_cells, " + ".join(grid.describe_count() for grid, _ in grids[:3]), label)
    check_benchmarks(file)
    return benchmark, grids


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
        try:
            flagged = layer_settings(values, overrides)
        except ValueError as error:
            raise MasbenchError(one_line(f"sweep {label}: {error}")) from None
        if "optimizer_args" in overrides and isinstance(values.get("optimizer_args"), dict):
            # Per optimizer: the flags' arguments replace the file's; the file's for other optimizers stay.
            flagged["optimizer_args"] = merge_optimizer_args(values.get("optimizer_args"), overrides["optimizer_args"])
        values, base = _data_base(flagged, typed, file.path.absolute().parent)
        try:
            specs.append((GridSpec(**values), base))
        except ValidationError as error:
            raise MasbenchError(grid_message(error, f"sweep {label}")) from None
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
