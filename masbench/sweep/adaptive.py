"""Adaptive seeds (``sweep --until-ci W``): rounds of seeds until each cell's CI95 half-width is at most W.

Here a *cell* is what the report shows as one row: the runs that share a ``config_key`` and differ by seed.
Round 1 runs every cell's initial seeds (``--seeds``/``seed_list``, at least two). After each round,
``seeds_wanted`` (``masbench.grid.seed_budget``) decides from the cell's stored results whether it needs more
seeds and how many; their numbers continue its sequence (``seed_sequence``), so a rerun of the same
command, or a second sweep run beside it, plans the very same runs, and the claims (``run_unit``) keep
every run trained once. The sweep ends when no cell needs more, or when a round is interrupted.

The accuracy is the report's default: a completed run's best test accuracy over its epochs, in percent.
Failed and diverged runs use up a seed of the cell's budget (``max_seeds``) but have no accuracy: the
interval is over the completed runs only, as the report's mean and CI95 are, and ``AdaptiveCell`` counts
the runs left out so that the sweep's summary says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from masbench import signals
from masbench.grid.benchmarks import Cell
from masbench.grid.seed_budget import ci95_half_width, seed_sequence, seeds_wanted, width_met
from masbench.store import Store
from masbench.sweep.plan import SweepSummary


@dataclass
class AdaptiveCell:
    """One report cell of an adaptive sweep: its seeds so far and where its interval stands."""

    first: Cell  # a cell of its initial seeds: the others are this one with another seed
    initial: list[int]
    until_ci: float | None
    max_seeds: int
    tried: int = 0  # seeds of its sequence planned so far
    accs: list[float] = field(default_factory=list)  # completed runs' accuracies, in seed order
    left_out: int = 0  # planned runs not completed (failed, diverged, or not finished): not in the interval

    @property
    def width(self) -> float:
        return ci95_half_width(self.accs)

    @property
    def met(self) -> bool:
        return len(self.accs) >= 2 and self.until_ci is not None and width_met(self.width, self.until_ci)

    def seeds(self) -> list[int]:
        return seed_sequence(self.initial, self.tried)

    def cells(self, start: int = 0) -> list[Cell]:
        """Its cells from the ``start``-th seed of its sequence to the last planned."""
        return [self.first if seed == self.first.spec.seed else
                replace(self.first, spec=self.first.spec.model_copy(update={"seed": seed}))
                for seed in self.seeds()[start:]]


def adaptive_cells(cells: Sequence[Cell]) -> list[AdaptiveCell]:
    """The sweep's cells grouped into report cells, in the sweep's order, each with its initial seeds."""
    groups: dict[str, AdaptiveCell] = {}
    for cell in cells:
        key = cell.spec.config_key
        if key not in groups:
            groups[key] = AdaptiveCell(cell, [], cell.until_ci, cell.max_seeds or 0)
        groups[key].initial.append(cell.spec.seed)
    for group in groups.values():
        group.tried = len(group.initial)
        group.max_seeds = max(group.max_seeds, group.tried)  # a cell without until_ci keeps its seeds
    return list(groups.values())


def record_results(groups: Sequence[AdaptiveCell], store: Store) -> None:
    """Each cell's completed accuracies (best test accuracy, percent) over the seeds it has planned."""
    from masbench.store.queries import run_accuracy_frame

    benchmarks = {group.first.spec.benchmark for group in groups}
    only = benchmarks.pop() if len(benchmarks) == 1 else None  # fewer rows to read; None reads them all
    runs = run_accuracy_frame(store, "best", benchmark=only)
    by_run = {(row.config_key, int(row.seed)): (row.status, row.acc) for row in runs.itertuples()}
    for group in groups:
        key = group.first.spec.config_key
        results = [by_run.get((key, seed), ("missing", float("nan"))) for seed in group.seeds()]
        group.accs = [acc for status, acc in results if status == "completed"]
        group.left_out = len(results) - len(group.accs)


def run_adaptive(cells: Sequence[Cell], store: Store, run_round: Callable[[list[Cell], int], SweepSummary],
                 ) -> tuple[SweepSummary, list[AdaptiveCell]]:
    """Rounds of ``run_round(cells, round)`` until no cell needs more seeds; the summary of all the rounds.

    Each round runs only the seeds it adds, so that ``--retry-failed`` retries a failed run once, not
    once per round. The summary counts every planned run; ``ran`` adds up the rounds'. A stop (SIGINT,
    SIGTERM) between two rounds ends the sweep as interrupted, like a stop within one; call it inside
    ``stop_on_signals``, as the CLI does.
    """
    groups = adaptive_cells(cells)
    round_cells, number = list(cells), 1
    summaries: list[SweepSummary] = []
    stopped_by = None
    while True:
        summaries.append(run_round(round_cells, number))
        record_results(groups, store)
        if summaries[-1].interrupted:
            stopped_by = summaries[-1].stopped_by
            break
        round_cells = _next_round(groups)
        if not round_cells:
            break  # done: a signal during this round's end changes nothing, as in one round (plan.summarize)
        number += 1
        try:
            signals.next_round()  # the round ended in ``finishing``; a signal since then stops the sweep here
        except KeyboardInterrupt:
            stopped_by = signals.requested()
            break
    signals.finishing()
    return _merged(summaries, stopped_by), groups


def _next_round(groups: Sequence[AdaptiveCell]) -> list[Cell]:
    """The seeds each cell adds (``seeds_wanted``), as cells; each group's ``tried`` moves on to include them."""
    cells: list[Cell] = []
    for group in groups:
        if group.until_ci is None:
            continue
        wanted = seeds_wanted(group.accs, group.tried, group.until_ci, group.max_seeds)
        start, group.tried = group.tried, wanted
        cells += group.cells(start)
    return cells


def _merged(summaries: list[SweepSummary], stopped_by: int | None) -> SweepSummary:
    """One summary of the rounds: every run they planned, and the stop, if one cut the sweep short."""
    states = {key: state for summary in summaries for key, state in summary.states.items()}
    return SweepSummary(sum(s.total for s in summaries), states, sum(s.ran for s in summaries), stopped_by,
                        sum(s.dead_workers for s in summaries))
