"""``--prune``: each trial's epochs go to its Optuna trial, whose study's pruner may end it (``Prune``).

``TrialPruning`` is one callback for every cell of a tune's round (``SweepSettings.callbacks``): picklable
(it holds the store's URL and plain values, and opens the studies where it runs, in a worker process
too), and each cell's member gets its own ``CellPruning`` (``Callback.for_cell``), so that the members
of a pack are pruned one by one while the others go on.

Per epoch, the member's validation accuracy is reported to its trial at step = the epoch, and the
study's pruner (successive halving: ``masbench.tune.studies.make_pruner``) decides whether it goes on;
the last epoch is never pruned (the trial is complete). A trial resumed from its checkpoint reports the
epochs it restores. The trial of a quasirandom point is added to its study here, by the worker that
holds the cell's claim, so that no cell has two trials; a TPE trial was asked before its cell ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from masbench.engine import Callback, EpochMetrics, Prune, RunInfo
from masbench.spec import RunSpec
from masbench.tune import studies


@dataclass(frozen=True)
class TrialCell:
    """What the pruner needs of one cell: its optimizer label, its point and the space it was drawn from."""

    label: str
    params: dict[str, Any]
    space: Mapping[str, Any]  # name -> Dimension
    epochs: int  # each trial's (Hyperband's largest resource)
    number: int | None = None  # a TPE trial's number in its study; None: a quasirandom point (added on start)


@dataclass
class TrialPruning(Callback):
    """The pruning of a round's cells (``cells``: run key -> ``TrialCell``) in the tune ``tune_key``."""

    store_url: str
    tune_key: str
    pruner: str  # halving or hyperband
    cells: dict[str, TrialCell]
    _opened: dict[str, Any] = field(default_factory=dict, repr=False)  # label -> (storage, study), where it runs

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_opened": {}}  # a worker process opens its own

    def study(self, cell: TrialCell):
        """The storage and study of ``cell``'s optimizer label, opened once in this process."""
        if cell.label not in self._opened:
            storage = studies.storage_for(self.store_url)
            pruner = studies.make_pruner(self.pruner, cell.epochs)
            self._opened[cell.label] = (storage, studies.open_study(storage, self.tune_key, cell.label, pruner=pruner))
        return self._opened[cell.label]

    def for_cell(self, spec: RunSpec) -> Callback:
        cell = self.cells.get(spec.key)
        return self if cell is None else CellPruning(self, spec, cell)


class CellPruning(Callback):
    """One cell's trial: its epochs reported, and ``Prune`` raised when its study's pruner says so."""

    def __init__(self, parent: TrialPruning, spec: RunSpec, cell: TrialCell) -> None:
        self.parent, self.spec, self.cell = parent, spec, cell
        self.trial = None  # optuna.trial.Trial, once started; None for a trial already finished
        self.reported: set[int] = set()  # the epochs its trial had when this process took it up

    def on_start(self, info: RunInfo) -> None:
        optuna = studies.require_optuna("--prune")
        storage, study = self.parent.study(self.cell)
        found = (studies.trial_of(study, self.spec.key) if self.cell.number is None
                 else study.get_trials(deepcopy=False)[self.cell.number])
        if found is None:
            trial_id = studies.add_running_trial(storage, study, self.cell.params, self.cell.space, self.spec.key)
        elif found.state == optuna.trial.TrialState.RUNNING:
            study_id = storage.get_study_id_from_name(study.study_name)
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, found.number)
            self.reported = set(found.intermediate_values)
        else:
            return  # told already (a forced rerun): nothing to report to
        self.trial = optuna.trial.Trial(study, trial_id)

    def on_resume(self, history: list[EpochMetrics]) -> None:
        if self.trial is None:
            return
        for metrics in history:
            if metrics.epoch not in self.reported and metrics.val_acc is not None:
                self.trial.report(metrics.val_acc, metrics.epoch)

    def on_epoch(self, metrics: EpochMetrics) -> None:
        if self.trial is None or metrics.val_acc is None:
            return
        self.trial.report(metrics.val_acc, metrics.epoch)
        if metrics.epoch < self.spec.epochs and self.trial.should_prune():
            raise Prune(f"pruned after epoch {metrics.epoch} by {self.parent.pruner} "
                        f"(validation accuracy {metrics.val_acc:.4f})")
