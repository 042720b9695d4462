"""Pruning (``masbench.engine.Prune``): a callback ends a member after an epoch; the run is stored ``pruned``.

The engine's part is tested here with a plain callback; the Optuna pruner that raises it in a tune is
tested in ``test_tune_optuna.py``.
"""

from __future__ import annotations

import pytest

from masbench.engine import Callback, EpochMetrics, ExecOptions, Member, Prune, checkpoint_path, train
from masbench.spec import RunSpec
from masbench.store import Store
from masbench.sweep import run_unit

BASE = dict(dataset="digits", model="mlp", optimizer="sgd", momentum=0.9, batch_size=256, epochs=2,
            val_fraction=0.1)


class PruneAt(Callback):
    """Prunes its member after epoch ``at``; counts the epochs it heard of."""

    def __init__(self, at: int) -> None:
        self.at, self.heard = at, []

    def on_epoch(self, metrics: EpochMetrics) -> None:
        self.heard.append(metrics.epoch)
        if metrics.epoch == self.at:
            raise Prune(f"pruned at epoch {self.at}")


class Heard(Callback):
    """A callback after the pruner: it still hears of the pruned epoch."""

    def __init__(self) -> None:
        self.heard = []

    def on_epoch(self, metrics: EpochMetrics) -> None:
        self.heard.append(metrics.epoch)


def specs(k: int) -> list[RunSpec]:
    return [RunSpec(**BASE, lr=lr) for lr in (0.3, 0.03, 0.003)[:k]]


@pytest.mark.parametrize("k", [1, 3])
def test_a_pruned_member_stops_after_its_epoch_and_the_others_go_on(tmp_path, k):
    options = ExecOptions(device="cpu", checkpoint_dir=tmp_path / "ckpt")
    alone = train([Member(spec) for spec in specs(k)], options)
    pruner, after = PruneAt(1), Heard()
    members = [Member(spec, (pruner, after) if i == 0 else ()) for i, spec in enumerate(specs(k))]
    outcomes = train(members, options)
    first = outcomes[0].result
    assert first.status == "pruned" and first.error == "pruned at epoch 1"
    assert [m.epoch for m in first.epochs] == [1] and pruner.heard == [1] and after.heard == [1]
    assert first.epochs[0].val_acc == alone[0].result.epochs[0].val_acc
    assert not checkpoint_path(specs(k)[0], options).exists()
    for pruned_not, unpruned in zip(outcomes[1:], alone[1:]):  # the rest of the pack: as if nothing happened
        assert pruned_not.result.status == "completed"
        assert [m.val_acc for m in pruned_not.result.epochs] == [m.val_acc for m in unpruned.result.epochs]


def test_a_pruned_run_is_stored_pruned_with_its_epochs_and_not_trained_again(sqlite_url, tmp_path):
    store = Store(sqlite_url)
    options = ExecOptions(device="cpu", checkpoint_dir=tmp_path / "ckpt")
    cells = specs(3)
    first = run_unit(cells, store, options, callbacks=(PruneAt(1),))
    assert [o.status for o in first] == ["pruned"] * 3
    for outcome in first:
        run = store.get_run(outcome.spec.key)
        assert (run.status, run.error, run.attempts) == ("pruned", "pruned at epoch 1", 1)
        assert [e.epoch for e in store.epochs_of(run.id)] == [1]
    again = run_unit(cells, store, options)
    assert [o.status for o in again] == ["skipped"] * 3
    assert [store.get_run(spec.key).attempts for spec in cells] == [1, 1, 1]
    store.close()
