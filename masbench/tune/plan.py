"""A tune's plan: its entries (one per optimizer label of the grid), their search trials and final cells.

A trial is an ordinary cell (``masbench.grid.benchmarks.Cell``) whose spec is made by the grid's own path
(``make_spec`` over the grid's shared settings and the entry's optimizer configuration) with the trial's
hyperparameters on top, ``val_fraction`` set (the tune always holds out a validation split) and the tuning
seed (0). So trials are claimed, resumed, skipped when done and packed as a sweep's cells are, and a trial
that a sweep or another tune has already trained is not trained again. Once each entry's trial is chosen
(``masbench.report.choice``), its final cells are the chosen spec on seeds ``seed + 1 .. seed + K``, disjoint
from the tuning seed; they keep the validation split, so that a final run's test accuracy is read at its
epoch of best validation accuracy, as the choice was made.

An entry's label is its optimizer: ``sgd``, ``adam``, ``mas`` (lambda_adam searched), ``mas[lambda_adam=0.3]``
(each value of ``--lambdas`` its own entry), ``mas[lambda_schedule=linear:1:0]``, ``mix:adam=0.5,sgd=0.5``;
prefixed with ``DATASET/MODEL/`` when the tune spans more than one data set and model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from masbench.errors import MasbenchError
from masbench.grid.benchmarks import Cell, plan_grids
from masbench.grid.grids import GridSpec, grid_configs
from masbench.grid.lambdas import complement
from masbench.grid.search import Dimension, merge_search, parse_search_mapping
from masbench.spec import RunSpec, make_spec, mix_text
from masbench.text.shown import one_line, shown
from masbench.tune.samplers import derived_seed, quasirandom
from masbench.tune.space import entry_space

SAMPLERS = ("quasirandom", "tpe")
PRUNERS = ("halving", "hyperband")
SEARCH, FINAL = "search", "final"


@dataclass(frozen=True)
class TuneSettings:
    """What a tune does besides its grid: every setting here is part of its key."""

    budget: int = 8  # search trials per entry, the same for every optimizer
    sampler: str = "quasirandom"
    seed: int = 0  # the tuning seed: the search trials' runs, and the sampler's scramble (with each label)
    final_seeds: int = 3  # the chosen trial's reruns, on seeds seed+1 .. seed+final_seeds
    val_fraction: float = 0.1
    prune: bool = False
    pruner: str = "halving"  # with prune: successive halving, or hyperband (masbench.tune.studies.make_pruner)

    def __post_init__(self) -> None:
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or not 1 <= self.budget <= 10_000:
            raise MasbenchError(f"Invalid --budget: {shown(self.budget)} (trials per optimizer, in [1, 10,000])")
        if self.sampler not in SAMPLERS:
            raise MasbenchError(f"Invalid --sampler: {shown(self.sampler)} (valid: {', '.join(SAMPLERS)})")
        if isinstance(self.final_seeds, bool) or not 0 <= self.final_seeds <= 1000:
            raise MasbenchError(f"Invalid --final-seeds: {shown(self.final_seeds)} (an integer in [0, 1000]; "
                                f"0: none)")
        if self.pruner not in PRUNERS:
            raise MasbenchError(f"Invalid --pruner: {shown(self.pruner)} (valid: {', '.join(PRUNERS)})")
        if self.seed < 0:
            raise MasbenchError(f"Invalid --seed: {shown(self.seed)} (a non-negative integer)")
        from masbench.data.validation import check_val_fraction

        try:
            check_val_fraction(self.val_fraction)
        except ValueError as error:
            raise MasbenchError(one_line(f"--val-fraction: {error}")) from None

    @property
    def final_seed_values(self) -> list[int]:
        return list(range(self.seed + 1, self.seed + 1 + self.final_seeds))


@dataclass(frozen=True)
class Entry:
    """One optimizer label of a tune: the grid's settings and optimizer configuration, and its space."""

    label: str
    optimizer: str  # the optimizer's name: what --search and the default spaces are keyed by
    space: dict[str, Dimension]
    values: dict[str, Any]  # make_spec's values shared by its trials (not the seed, nor the trial's params)
    data_dir: str | None
    base_dir: str
    pack: int | str
    context: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def spec(self, params: Mapping[str, Any], seed: int) -> RunSpec:
        """The cell of the trial ``params`` on ``seed``: run spec fields the optimizer takes from the spec, set
        as fields (lambda_sgd follows lambda_adam); any other parameter, one of its optimizer arguments."""
        from masbench.optim.registry import spec_hyperparameters

        taken = spec_hyperparameters(self.values["optimizer"], RunSpec.model_fields) | {"lambda_adam"}
        fields, args = {}, dict(self.values.get("optimizer_args") or {})
        for name, value in params.items():
            if name in RunSpec.model_fields and name in taken:
                fields[name] = value
            else:
                args[name] = value
        if "lambda_adam" in fields:
            fields["lambda_sgd"] = complement(fields["lambda_adam"])
        values = {**self.values, **fields, "seed": seed}
        values.pop("optimizer_args", None)
        if args:
            values["optimizer_args"] = args
        return make_spec(self.context, **values)

    def cell(self, params: Mapping[str, Any], seed: int) -> Cell:
        return Cell(self.spec(params, seed), self.data_dir, self.base_dir, self.pack)


@dataclass(frozen=True)
class Trial:
    """A trial of a tune: its entry's label, phase (search or final), number (search: from 0; final: the
    seed) and hyperparameters, and the cell that trains it."""

    label: str
    phase: str
    number: int
    params: dict[str, Any]
    cell: Cell

    def row(self) -> dict[str, Any]:
        """The trial as ``Store.record_trials`` takes it."""
        return dict(optimizer=self.label, phase=self.phase, number=self.number, params=self.params,
                    run_key=self.cell.spec.key)


@dataclass(frozen=True)
class Tune:
    """A planned tune: its name (the benchmark's, or the data set's), key, settings, entries and search trials
    (none for a sampler that asks as it goes: TPE)."""

    name: str
    key: str
    settings: TuneSettings
    entries: list[Entry]
    search: list[Trial]
    record: dict[str, Any]  # the canonical settings the key hashes, as stored in the tunes table

    def entry(self, label: str) -> Entry:
        return next(entry for entry in self.entries if entry.label == label)

    def final_trials(self, chosen: Mapping[str, Mapping[str, Any]]) -> list[Trial]:
        """The final trials of the entries in ``chosen`` (label -> the chosen trial's params): each on every
        final seed, numbered by its seed."""
        return [Trial(entry.label, FINAL, seed, dict(chosen[entry.label]), entry.cell(chosen[entry.label], seed))
                for entry in self.entries if entry.label in chosen for seed in self.settings.final_seed_values]


def entry_label(config: Mapping[str, Any]) -> str:
    """An optimizer configuration's label: its name, with MAS's held lambda or schedule, or a mix's text."""
    optimizer = config["optimizer"]
    if optimizer == "mix":
        return mix_text(config["weights"])
    if optimizer == "mas" and "lambda_schedule" in config:
        return f"mas[lambda_schedule={config['lambda_schedule']}]"
    if optimizer == "mas" and "lambda_adam" in config:
        return f"mas[lambda_adam={config['lambda_adam']:g}]"
    return optimizer


def plan_tune(*, benchmark: str | None = None, dataset: str | None = None, overrides: dict[str, Any] | None = None,
              benchmarks_path: Path | str | None = None, settings: TuneSettings = TuneSettings(),
              search: Mapping[str, Mapping[str, Dimension]] | None = None, hold_lambdas: bool = False) -> Tune:
    """Plan the tune of a benchmark's grids (or a data set's): its entries, their spaces and search trials.

    ``overrides``: the command line's grid settings, as ``plan_sweep`` takes them (``val_fraction`` and the
    seeds are the tune's own). ``search``: ``--search`` overrides, over each grid's ``search:``.
    ``hold_lambdas``: ``--lambdas`` was given, so MAS's lambda_adam is held at each of its values.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if k not in ("seeds", "seed_list", "val_fraction")}
    name, grids = plan_grids(benchmark=benchmark, dataset=dataset, overrides=overrides,
                             benchmarks_path=benchmarks_path)
    entries = []
    for grid, base in grids:
        entries += _grid_entries(grid, name, base, settings, search or {}, hold_lambdas)
    stray = sorted(set(search or {}) - {e.optimizer for e in entries})
    if stray:
        raise MasbenchError(one_line(f"Invalid --search for {shown(stray[0])}: it is not an optimizer of the tune "
                                     f"(its optimizers: {', '.join(dict.fromkeys(e.optimizer for e in entries))})"))
    places = {(e.values["dataset"], e.values["model"]) for e in entries}
    if len(places) > 1:
        entries = [_prefixed(e) for e in entries]
    twice = next((e.label for i, e in enumerate(entries) if e.label in [f.label for f in entries[:i]]), None)
    if twice is not None:
        raise MasbenchError(f"tune {shown(name or dataset)}: optimizer {shown(twice)} appears twice in its grids "
                            f"(give each optimizer once per data set and model)")
    record = {
        "benchmark": name, "budget": settings.budget, "sampler": settings.sampler, "seed": settings.seed,
        "final_seeds": settings.final_seeds, "val_fraction": settings.val_fraction, "prune": settings.prune,
        **({"pruner": settings.pruner} if settings.prune else {}),  # keys of tunes without pruning unchanged
        "entries": {e.label: {"cell": e.spec({}, settings.seed).config_key,
                              "space": {p: d.text() for p, d in e.space.items()}} for e in entries},
    }
    key = hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    trials = []
    if settings.sampler == "quasirandom":
        for entry in entries:
            points = quasirandom(entry.space, settings.budget, derived_seed(settings.seed, entry.label))
            trials += [Trial(entry.label, SEARCH, number, params, entry.cell(params, settings.seed))
                       for number, params in enumerate(points)]
    return Tune(name or str(dataset), key, settings, entries, trials, record)


def _grid_entries(grid: GridSpec, benchmark: str | None, base: Path, settings: TuneSettings,
                  search: Mapping[str, Mapping[str, Dimension]], hold_lambdas: bool) -> list[Entry]:
    shared, configs = grid_configs(grid, tuned_lambdas=not hold_lambdas)
    layered = merge_search(parse_search_mapping(grid.search) if grid.search else {}, search)
    context = {"data_base": base, "fingerprints": {}}
    entries = []
    for model in grid.models:
        for config in configs:
            optimizer = config["optimizer"]
            held = {"lambda_adam"} if optimizer == "mas" and ({"lambda_adam", "lambda_schedule"} & set(config)) else ()
            values = {**shared, "benchmark": benchmark, "dataset": grid.dataset, "model": model, **config,
                      "val_fraction": settings.val_fraction}
            entries.append(Entry(entry_label(config), optimizer, entry_space(optimizer, layered, held), values,
                                 grid.data_dir, str(base), grid.pack, context))
    return entries


def _prefixed(entry: Entry) -> Entry:
    from dataclasses import replace

    return replace(entry, label=f"{entry.values['dataset']}/{entry.values['model']}/{entry.label}")
