"""Sweep grids: ``GridSpec`` (one grid's settings, checked), its cell count, and its expansion into run specs.

A grid is counted from its arithmetic (models x (baselines + lambdas + mixes) x the settings' axes x seeds)
before any cell is built,
and without torch: the registries are imported only to build cells (``expand_grid``, ``check_grid``).
``masbench.grid.benchmarks`` reads the benchmarks file into grids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from masbench.errors import MasbenchError
from masbench.grid.optimizers import (
    check_baselines,
    check_lambda_schedules,
    mas_configs,
    mas_parts,
    mix_configs,
    optimizer_configs,
    resolve_optimizer_args,
)
from masbench.grid.lambdas import complement, count_lambdas, count_text, parse_lambdas
from masbench.grid.mix_weights import simplex, simplex_count
from masbench.grid.settings import (
    PER_OPTIMIZER,
    axis_length,
    check_optimizer_args,
    check_reach,
    check_setting,
    mix_name,
    resolve_names,
    stray_message,
    stray_names,
    with_settings,
)
from masbench.grid.search import parse_search_mapping
from masbench.spec import RunSpec, make_spec
from masbench.text.limits import check_ranges
from masbench.text.numbers import is_digits, is_number
from masbench.text.shown import one_line, shown

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
        if is_digits(value):
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
    mix: str | list[str] | None = None  # components of a mix grid over the simplex (mix_weights.simplex)
    mix_step: StrictFloat | str | None = None  # its step: weights are multiples of it that sum to 1
    seeds: StrictInt | None = None
    seed_list: list[StrictInt] | None = None
    data_dir: str | None = None
    pack: Any = "off"  # how a sweep trains the cells (parse_pack), not part of them
    until_ci: Any = None  # adaptive seeds (masbench.grid.seed_budget): the CI95 half-width to reach, in accuracy points
    max_seeds: Any = None  # with until_ci: the most seeds per cell (default DEFAULT_MAX_SEEDS); the cap counts it
    target: StrictFloat | None = None  # reports' time to target: a test accuracy in percent, not part of the cells
    search: dict[str, Any] | None = None  # masbench tune's search spaces, {sgd: {lr: "log:1e-3:1"}} (grid.search)
    # Everything else is a RunSpec field shared by the grid's cells; lr, momentum and weight_decay may also be
    # an axis ([1e-3, 3e-3]) or a value per optimizer ({adam: 1e-3, sgd: 0.1}): masbench.grid.settings.
    lr: StrictFloat | list[StrictFloat] | dict[str, StrictFloat] | None = None
    lr_schedule: str | None = None
    momentum: StrictFloat | list[StrictFloat] | dict[str, StrictFloat] | None = None
    dampening: StrictFloat | None = None
    nesterov: StrictBool | None = None
    weight_decay: StrictFloat | list[StrictFloat] | dict[str, StrictFloat] | None = None
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
    val_fraction: StrictFloat | None = None

    @field_validator("baselines")
    @classmethod
    def _resolve_baselines(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_baselines(value)

    @field_validator("optimizer_args")
    @classmethod
    def _resolve_optimizer_args(cls, value: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]] | None:
        return None if value is None else resolve_optimizer_args(value)

    @field_validator(*PER_OPTIMIZER)
    @classmethod
    def _check_setting(cls, value: Any, info: ValidationInfo) -> Any:
        return check_setting(value, info.field_name)

    @field_validator("target")
    @classmethod
    def _check_target(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= 100:
            raise ValueError(f"Invalid target: {shown(value)} (a test accuracy in percent, in (0, 100], e.g. 85)")
        return value

    @field_validator("search")
    @classmethod
    def _check_search(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            parse_search_mapping(value)  # kept as written; masbench tune reads it with the same parser
        return value

    @field_validator("lambda_schedule")
    @classmethod
    def _check_lambda_schedules(cls, value: str | list[str] | None) -> list[str] | None:
        return None if value is None else check_lambda_schedules(value)

    @field_validator("mix")
    @classmethod
    def _split_mix(cls, value: str | list[str] | None) -> list[str] | None:
        return [part.strip() for part in value.split(",")] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> GridSpec:
        check_ranges(self.model_dump(exclude_none=True))
        if (self.mix is None) != (self.mix_step is None):
            raise ValueError("Invalid mix: give mix (its components) and mix_step together, e.g. mix: adam,sgd,rmsprop "
                             "and mix_step: 0.25")
        if self.mix is not None:
            simplex_count(self.mix, self.mix_step)
        try:
            count_lambdas(self.lambdas)
        except MasbenchError as error:
            raise ValueError(str(error)) from None
        if not self.models:
            raise ValueError("Invalid models: the list is empty")
        if isinstance(self.pack, str) and self.pack not in ("auto", "off"):  # strict as the numbers are: "7" is text
            fix = " is text, not an integer (write it without quotes; " if is_number(self.pack) else " (valid: "
            raise ValueError(f"Invalid pack: {shown(self.pack)}{fix}{PACK_VALID})")
        object.__setattr__(self, "pack", parse_pack(self.pack))  # frozen: the normal form, 7, auto or off
        if self.seeds is not None and self.seed_list is not None:
            raise ValueError("Invalid seeds: give seeds (a count) or seed_list, not both")
        if self.seed_list is not None and not self.seed_list:
            raise ValueError("Invalid seed_list: [] (non-negative integers, at least one)")
        _check_adaptive(self)
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

    def planned_seeds(self) -> int:
        """Seeds per cell that the cap counts: ``max_seeds`` with adaptive seeds (``until_ci``), else the seeds."""
        return self.max_seeds if self.until_ci is not None else self.seed_count()

    def baseline_names(self, kind: str) -> list[str]:
        if self.baselines is not None:
            return list(self.baselines)
        return list(TEXT_BASELINES if kind == "text" else IMAGE_BASELINES)

    def cell_count(self) -> int:
        """models x (baselines + lambdas + mixes) x the settings' axes x seeds, from the arithmetic: nothing is
        built (duplicates included: an adam cell on a momentum axis is one cell, counted once per value)."""
        from masbench.data import dataset_kind

        grid, schedules = mas_parts(self.lambda_schedule)
        configs = len(self.baseline_names(dataset_kind(self.dataset))) + grid * count_lambdas(self.lambdas) + schedules
        return len(self.models) * (configs + self.mix_count()) * self.axes_count() * self.planned_seeds()

    def axes_count(self) -> int:
        """The cells of each optimizer configuration: the product of the settings' axes (1 without one)."""
        count = 1
        for what in PER_OPTIMIZER:
            count *= axis_length(getattr(self, what))
        return count

    def optimizers(self) -> list[str]:
        """The names a per-optimizer setting may give: the baselines, ``mas`` (every MAS cell) and each mix by
        its weights (``mix:adam=0.5,sgd=0.5``); torch-free."""
        from masbench.data import dataset_kind

        grid, schedules = mas_parts(self.lambda_schedule)
        mas = ["mas"] if schedules or grid and count_lambdas(self.lambdas) else []
        mixes = [mix_name(point) for point in simplex(self.mix, self.mix_step)] if self.mix is not None else []
        return [*self.baseline_names(dataset_kind(self.dataset)), *mas, *mixes]

    def mix_count(self) -> int:
        return simplex_count(self.mix, self.mix_step) if self.mix is not None else 0

    def describe_count(self) -> str:
        from masbench.data import dataset_kind

        baselines = len(self.baseline_names(dataset_kind(self.dataset)))
        grid, schedules = mas_parts(self.lambda_schedule)
        lambdas = count_lambdas(self.lambdas) if grid else 0
        return (f"{len(self.models):,} model(s) x ({baselines} baseline(s) + {count_text(lambdas)} lambda(s)"
                + (f" + {schedules} lambda schedule(s)" if schedules else "")
                + (f" + {self.mix_count():,} mix(es)" if self.mix else "")
                + ")" + "".join(f" x {axis_length(getattr(self, what))} {what}(s)" for what in PER_OPTIMIZER
                                if isinstance(getattr(self, what), list))
                + f" x {self.planned_seeds():,} seed(s)" + (" at most" if self.until_ci is not None else ""))


def _check_adaptive(grid: GridSpec) -> None:
    """until_ci and max_seeds, checked and put in normal form (max_seeds defaults with until_ci)."""
    from masbench.grid.seed_budget import DEFAULT_MAX_SEEDS, check_max_seeds, check_until_ci

    if grid.until_ci is None:
        if grid.max_seeds is not None:
            raise ValueError(f"Invalid max_seeds: {shown(grid.max_seeds)} (it goes with until_ci, the CI95 half-width "
                             f"to reach)")
        return
    object.__setattr__(grid, "until_ci", check_until_ci(grid.until_ci))  # frozen: set once, here
    given = grid.max_seeds is not None
    object.__setattr__(grid, "max_seeds", check_max_seeds(
        grid.max_seeds if given else DEFAULT_MAX_SEEDS, grid.seed_values(),
        "max_seeds" if given else "max_seeds (default; give max_seeds or --max-seeds)"))


RUN_FIELDS = ("lr", "lr_schedule", "momentum", "dampening", "nesterov", "weight_decay", "betas", "eps", "amsgrad",
              "bias_correction", "batch_size", "epochs", "pretrained", "max_length", "text_column", "label_column",
              "test_file", "test_fraction", "train_subset", "test_subset", "val_fraction")


def grid_configs(grid: GridSpec, lambdas: list[dict[str, Any]] | None = None, mixes: int | None = None, *,
                 tuned_lambdas: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The settings every cell of ``grid`` shares, and its optimizer configurations: baselines, then MAS, then
    mixes, each at every value of the per-optimizer settings (``with_settings``). ``lambdas`` and ``mixes``
    (the first N): fewer of them, to check the grid by a cell of each kind (``check_grid``).

    ``tuned_lambdas``: MAS's constant schedule is one configuration without lambdas (a tune searches
    lambda_adam), not one per value of the ``lambdas`` grid.
    """
    from masbench.data import dataset_kind

    shared = {name: getattr(grid, name) for name in RUN_FIELDS
              if getattr(grid, name) is not None and name not in PER_OPTIMIZER}
    settings = {what: getattr(grid, what) for what in PER_OPTIMIZER if getattr(grid, what) is not None}
    try:
        check_optimizer_args(grid.optimizer_args)
        check_reach(settings)
    except ValueError as error:
        raise MasbenchError(one_line(str(error))) from None
    configs = optimizer_configs(grid.baseline_names(dataset_kind(grid.dataset)), grid.optimizer_args)
    if tuned_lambdas:
        lambdas = [{}]
    elif lambdas is None:
        lambdas = [dict(lambda_adam=lam, lambda_sgd=complement(lam))
                   for lam in parse_lambdas(grid.lambdas, MAX_CELLS_CEILING)]
    configs += mas_configs(grid.lambda_schedule, lambdas) + mix_configs(grid.mix, grid.mix_step)[:mixes]
    return shared, with_settings(configs, settings)


def expand_grid(grid: GridSpec, benchmark: str | None, max_cells: int = MAX_CELLS_CEILING, *,
                data_base: Path | str | None = None) -> list[RunSpec]:
    """Every cell of ``grid``: model x (baselines, then MAS per lambda_adam) x seed, in that order.

    More than ``max_cells`` cells is an error, found from the count before any cell is made. Relative data
    paths are relative to ``data_base`` (default: the working directory); each is fingerprinted once.
    """
    check_count(grid.cell_count(), max_cells, grid.describe_count(), repr(benchmark or grid.dataset))
    shared, configs = grid_configs(grid)
    context = {"data_base": data_base, "fingerprints": {}}
    return [make_spec(context, benchmark=benchmark, dataset=grid.dataset, model=model, seed=seed, **shared, **config)
            for model in grid.models for config in configs for seed in grid.seed_values()]


def check_grid(grid: GridSpec, benchmark: str | None) -> None:
    """Validate ``grid`` by building one cell per model and optimizer, not the whole grid.

    The other cells differ only in lambda_adam (in [0, 1] by the grid's check) and the seed (in range by it),
    so they are valid when these are; a large grid in the file costs nothing until it is swept. Nor are its
    data read: their fingerprints are for the cells of a sweep, and a file may name data this machine lacks.
    """
    shared, configs = grid_configs(grid, lambdas=[{}], mixes=1)
    seed = grid.seed_list[0] if grid.seed_list else 0
    context = {"identify_data": False}
    for model in grid.models:
        for config in configs:
            make_spec(context, benchmark=benchmark, dataset=grid.dataset, model=model, seed=seed, **shared, **config)


def check_setting_names(grids: list[GridSpec], where: str = "grid", given: dict[str, Any] | None = None) -> None:
    """Each name of a per-optimizer setting (``lr: {sgd: 0.1}``) is an optimizer of one of ``grids`` at least
    (a benchmark's grids share its settings: each skips the names of the others'); MasbenchError.

    ``given``: check only the names of these settings (a sweep's flags): a benchmark's own names were checked
    when its file was loaded, and those of optimizers that ``--baselines`` or ``--no-baselines`` took out of
    the grid are let be.
    """
    for what in PER_OPTIMIZER:
        maps = [getattr(grid, what) for grid in grids] if given is None else [given.get(what)]
        if not any(isinstance(value, dict) for value in maps):
            continue
        optimizers = list(dict.fromkeys(name for grid in grids for name in grid.optimizers()))
        for value in maps:
            try:
                strays = stray_names(resolve_names(value, what) if isinstance(value, dict) else value, optimizers)
            except ValueError as error:
                raise MasbenchError(one_line(str(error))) from None
            if strays:
                raise MasbenchError(one_line(stray_message(what, strays[0], optimizers, where)))


def check_count(count: int, max_cells: int, detail: str, label: str) -> None:
    if count > max_cells:
        raise MasbenchError(
            f"sweep {label}: {count_text(count)} runs ({detail}), more than the cap of {max_cells:,}; narrow "
            f"--lambdas, --seeds or --models, or raise the cap with --max-cells (at most {MAX_CELLS_CEILING:,})"
        )


STRICT_TYPES = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false"}


def grid_message(error: ValidationError, where: str) -> str:
    """A grid's first validation error as one line: where, the key, its value and what would be valid."""
    first = _first_error(error.errors())
    key = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return one_line(f"{where}: unknown key {shown(key)} (valid keys: {', '.join(GridSpec.model_fields)})")
    if first["type"] == "value_error" or not key:
        return one_line(f"{where}: {message}")
    if first["type"] in STRICT_TYPES:
        value = first.get("input")
        kind = {bool: "a boolean, ", str: "text, "}.get(type(value), "")
        fix = " (write it without quotes)" if isinstance(value, str) and is_number(value) else ""
        return one_line(f"{where}, key {shown(key)}: {shown(value)} is {kind}not {STRICT_TYPES[first['type']]}{fix}")
    return one_line(f"{where}, key {shown(key)}: {shown(first.get('input'))} is invalid ({message})")


UNION_MEMBERS = {list: "list[float]", dict: "dict[str,float]"}  # pydantic's names of a setting's forms


def _first_error(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The first error, and for a per-optimizer setting (a number, a list or a map) the error of the form its
    value has, without pydantic's name of the form: ``lr: "1e-3"`` is text, not a number."""
    first = errors[0]
    if len(first["loc"]) < 2 or first["loc"][0] not in PER_OPTIMIZER:
        return first
    value = first.get("input")
    member = UNION_MEMBERS.get(type(value), "float")
    chosen = next((e for e in errors if e["loc"][:2] == (first["loc"][0], member)), first)
    return {**chosen, "loc": (chosen["loc"][0], *chosen["loc"][2:])}
