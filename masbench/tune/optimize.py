"""Tunes whose trials are not all known up front: ``--sampler tpe``, and ``--prune`` with either sampler.

``optimize`` runs rounds until every optimizer has spent its budget. Each round, per optimizer label:

1. the trials whose cells the store has finished are told to the label's study (``tell_finished``):
   completed: the run's best validation accuracy; diverged: the same, 0 when it has none (a diverged
   setting is worth nothing); pruned: ``PRUNED`` (Optuna keeps its last reported value); failed: ``FAIL``;
2. the trials still running are run again, with the same params, as the same cell: a tune killed
   mid-way leaves them, and its checkpoint resumes; one that another tune on the same store holds is
   waited for (claims: no trial trains twice);
3. new trials start while the budget allows, at most ``per_round``: TPE asks its study (``study.ask``,
   its sampler seeded from the tune's seed, the label and the trial's number, so that a tune run afresh
   asks the same trials wherever Optuna's TPE is deterministic); quasirandom takes the label's next
   point (``Search.points``: the same points a tune without pruning runs, in order).

The round's cells, every label's together, go to ``run_cells`` (the sweep's executor: claims, workers,
packs); the loop ends when no label has a cell left to run.

The budget is the same for every optimizer:

- without pruning, in trials: a label's study holds at most ``budget`` trials (TPE);
- with pruning (``--prune``), in epochs: ``budget`` trials x ``epochs`` each, per label. A trial starts
  only when the epochs spent (each finished trial's stored epochs) plus a full run for it and for each
  trial still running fit in that, so the budget is never overspent, and the epochs that pruning saves
  buy more trials. ``Spent`` reports the epochs used per label.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from masbench.engine import Callback
from masbench.grid.benchmarks import Cell
from masbench.store import Store
from masbench.tune import studies
from masbench.tune.plan import SEARCH, Trial
from masbench.tune.pruning import TrialCell, TrialPruning
from masbench.tune.samplers import derived_seed, quasirandom

SAMPLERS = ("quasirandom", "tpe")
UNCOUNTED = "uncounted"  # a TPE trial's user attribute: not in the budget (asked past it by a second tune)


@dataclass(frozen=True)
class Search:
    """One optimizer's search: its label, its space (name -> Dimension), how a point becomes its cell
    (``cell(params, number)``), the epochs each trial trains and, for the quasirandom sampler, its first
    n points (``points(n)``)."""

    label: str
    space: Mapping[str, Any]
    cell: Callable[[dict[str, Any], int], Cell]
    epochs: int
    points: Callable[[int], list[dict[str, Any]]] | None = None


@dataclass(frozen=True)
class Score:
    """A trial's run as the store has it: status, best validation accuracy (a fraction), epochs stored."""

    status: str
    best_val_acc: float | None
    epochs: int


@dataclass
class Spent:
    """A label's budget and what it used: trials started, pruned, epochs trained (stored)."""

    label: str
    budget: int  # trials, or epochs with pruning
    unit: str  # "trials" or "epochs"
    trials: int = 0
    pruned: int = 0
    epochs: int = 0


@dataclass
class Outcome:
    spent: dict[str, Spent]
    interrupted: bool = False
    summaries: list[Any] = field(default_factory=list)  # each round's SweepSummary


def scores(store: Store, tune_id: int) -> dict[str, Score]:
    """The search trials of the tune ``tune_id`` whose runs the store has, by run key, each as a ``Score``
    (``Store.trials_frame``: the one reading of a trial's best validation accuracy)."""
    import pandas as pd

    frame = store.trials_frame(tune_id)
    frame = frame[(frame["phase"] == SEARCH) & frame["status"].notna()]
    return {row.run_key: Score(row.status, None if pd.isna(row.best_val_acc) else float(row.best_val_acc),
                               0 if pd.isna(row.epochs) else int(row.epochs))
            for row in frame.itertuples(index=False)}


def tell_finished(study, score_of: Mapping[str, Score], key_of: Callable[[Any], str | None] | None = None) -> None:
    """Tell ``study`` each of its running trials whose cell the store has finished (see the module's doc);
    ``key_of(trial)``: its cell's key (default: its ``run_key`` attribute)."""
    optuna = studies.require_optuna()
    state = optuna.trial.TrialState
    for trial in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
        score = score_of.get(key_of(trial) if key_of is not None else trial.user_attrs.get(studies.RUN_KEY))
        if score is None or score.status not in ("completed", "diverged", "pruned", "failed"):
            continue
        if score.status == "pruned":
            told = {"state": state.PRUNED}
        elif score.status == "diverged":
            told = {"values": score.best_val_acc if score.best_val_acc is not None else 0.0}
        elif score.status == "completed" and score.best_val_acc is not None:
            told = {"values": score.best_val_acc}
        else:  # failed (or, which a tune's split rules out, completed without a validation accuracy)
            told = {"state": state.FAIL}
        try:
            study.tell(trial.number, **told, skip_if_finished=True)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another tune on the store told it meanwhile, from the same run


def startup_trials(budget: int) -> int:
    """TPE's random start: Optuna's 10, or half the budget when that is smaller (else a budget of 8 would be
    random search under TPE's name)."""
    return max(1, min(10, budget // 2))


def optimize(
    searches: Sequence[Search],
    store: Store,
    tune_id: int,
    tune_key: str,
    run_cells: Callable[[list[Cell], tuple[Callback, ...]], Any],
    *,
    sampler: str,
    budget: int,
    prune: str | None = None,
    seed: int = 0,
    per_round: int = 1,
) -> Outcome:
    """Rounds of trials of every search until each has spent ``budget`` (see the module's doc), in the tune
    ``tune_id`` (key ``tune_key``) of ``store``, whose ``trials`` table records each trial as it starts.

    ``run_cells(cells, callbacks)`` runs a round's cells (with ``prune``, ``callbacks`` holds the pruner) and
    returns its ``SweepSummary``; an interrupted round ends the tune (``Outcome.interrupted``).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}")
    if sampler == "quasirandom" and prune is None:
        raise ValueError("quasirandom trials without pruning are ordinary cells: plan_tune runs them")
    studies.require_optuna("--sampler tpe" if sampler == "tpe" else "--prune")
    storage = studies.storage_for(store.url)
    opened = {s.label: studies.open_study(storage, tune_key, s.label, pruner=studies.make_pruner(prune, s.epochs))
              for s in searches}
    unit = "epochs" if prune else "trials"
    outcome = Outcome({s.label: Spent(s.label, budget * s.epochs if prune else budget, unit) for s in searches})
    while True:
        cells: list[Cell] = []
        trial_cells: dict[str, TrialCell] = {}
        score_of = scores(store, tune_id)
        for search in searches:
            spent, study = outcome.spent[search.label], opened[search.label]
            if sampler == "tpe":
                planned = _tpe_round(search, study, storage, score_of, spent, budget=budget, prune=prune,
                                     seed=seed, per_round=per_round)
            else:
                planned = _quasirandom_round(search, study, score_of, spent, budget=budget, per_round=per_round)
            store.record_trials(tune_id, [Trial(search.label, SEARCH, number, params, cell).row()
                                          for number, params, cell in planned])
            for number, params, cell in planned:
                cells.append(cell)
                trial_cells[cell.spec.key] = TrialCell(search.label, params, dict(search.space), search.epochs,
                                                       number if sampler == "tpe" else None)
        if not cells:
            return outcome
        callbacks = (TrialPruning(store.url, tune_key, prune, trial_cells),) if prune else ()
        summary = run_cells(cells, callbacks)
        outcome.summaries.append(summary)
        if getattr(summary, "interrupted", False):
            outcome.interrupted = True
            return outcome


def _affordable(spent: Spent, running: int, epochs: int) -> bool:
    """Whether one more trial fits a budget in epochs even if it and every running one train to the end."""
    return spent.epochs + (running + 1) * epochs <= spent.budget


def _tpe_round(search: Search, study, storage, score_of: Mapping[str, Score], spent: Spent, *, budget: int,
               prune: str | None, seed: int, per_round: int) -> list[tuple[int, dict[str, Any], Cell]]:
    """Tell what finished; this round's TPE trials of ``search``: those still running, then new ones."""
    optuna = studies.require_optuna()
    state = optuna.trial.TrialState
    study_id = storage.get_study_id_from_name(study.study_name)

    def key_of(trial) -> str | None:  # derived from its params: a trial just asked elsewhere may not name it yet
        return search.cell(trial.params, trial.number).spec.key if _counted(trial, search) else None

    counted = [t for t in study.get_trials(deepcopy=False) if _counted(t, search)]
    for trial in counted:
        if trial.state == state.RUNNING and studies.RUN_KEY not in trial.user_attrs:  # killed before naming its cell
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            storage.set_trial_user_attr(trial_id, studies.RUN_KEY, key_of(trial))  # the pruner finds it by name
    tell_finished(study, score_of, key_of)
    planned = []
    spent.epochs = spent.pruned = 0
    counted = [t for t in study.get_trials(deepcopy=False) if _counted(t, search)]
    for trial in counted:
        if trial.state == state.RUNNING:
            planned.append((trial.number, trial.params, search.cell(trial.params, trial.number)))
        score = score_of.get(key_of(trial))
        if trial.state.is_finished() and score is not None:
            spent.epochs += score.epochs
        spent.pruned += trial.state == state.PRUNED
    spent.trials = len(counted)
    for _ in range(per_round):
        if prune and not _affordable(spent, len(planned), search.epochs):
            break
        if not prune and spent.trials >= budget:
            break
        study.sampler = optuna.samplers.TPESampler(
            seed=derived_seed(seed, f"{search.label}#{len(study.get_trials(deepcopy=False))}"),
            n_startup_trials=startup_trials(budget))
        trial = study.ask(studies.distributions(search.space))
        if not prune and _past_budget(study, trial.number, search, budget):  # another tune asked meanwhile
            trial.set_user_attr(UNCOUNTED, True)
            study.tell(trial, state=state.FAIL)
            break
        cell = search.cell(trial.params, trial.number)
        trial.set_user_attr(studies.RUN_KEY, cell.spec.key)
        planned.append((trial.number, trial.params, cell))
        spent.trials += 1
    return planned


def _counted(trial, search: Search) -> bool:
    """Whether ``trial`` counts in the budget: not asked past it, and with every parameter set (a trial
    that another tune is asking right now, or that a tune killed inside ``ask`` left, has not)."""
    return not trial.user_attrs.get(UNCOUNTED) and set(trial.params) == set(search.space)


def _past_budget(study, number: int, search: Search, budget: int) -> bool:
    """Whether trial ``number`` is beyond the first ``budget`` counted trials of ``study`` (another tune
    asked meanwhile)."""
    counted = sorted(t.number for t in study.get_trials(deepcopy=False) if _counted(t, search))
    return number not in counted[:budget]


def _quasirandom_round(search: Search, study, score_of: Mapping[str, Score], spent: Spent, *, budget: int,
                       per_round: int) -> list[tuple[int, dict[str, Any], Cell]]:
    """Tell what finished; this round's quasirandom trials of ``search`` (with pruning): the points started
    and not finished, then the next points, in order. A point has started once its run is in the store."""
    points = search.points(budget * search.epochs)  # each trial trains one epoch at least: never more trials
    cells = [search.cell(point, number) for number, point in enumerate(points)]
    tell_finished(study, score_of)
    planned: list[tuple[int, dict[str, Any], Cell]] = []
    spent.epochs = spent.pruned = 0
    number = 0
    while number < len(cells) and cells[number].spec.key in score_of:
        score = score_of[cells[number].spec.key]
        if score.status in ("completed", "diverged", "pruned", "failed"):
            spent.epochs += score.epochs
            spent.pruned += score.status == "pruned"
        else:
            planned.append((number, points[number], cells[number]))
        number += 1
    running = len(planned)
    while (number < len(cells) and len(planned) - running < per_round
           and _affordable(spent, len(planned), search.epochs)):
        planned.append((number, points[number], cells[number]))
        number += 1
    spent.trials = number
    return planned


def searches_of(planned) -> list[Search]:
    """The searches of a planned tune (``masbench.tune.plan.Tune``): per entry, its space, its trials' cells on
    the tuning seed, their epochs, and its quasirandom points (the very points of a tune without pruning)."""
    seed = planned.settings.seed
    return [Search(entry.label, entry.space, lambda params, number, entry=entry: entry.cell(params, seed),
                   entry.spec({}, seed).epochs,
                   lambda n, entry=entry: quasirandom(entry.space, n, derived_seed(seed, entry.label)))
            for entry in planned.entries]
