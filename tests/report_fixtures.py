"""A store filled with known runs, shared by the report tests (test_report, test_html_report, test_gate, ...)."""

from __future__ import annotations

from collections.abc import Callable

from masbench.spec import RunSpec
from masbench.sweep import run_values

# Per-epoch test accuracies of each run: (optimizer, lambda_adam, model) -> {seed: [acc per epoch] or a status}.
RUNS = {
    ("adam", None, "mlp"): {0: [0.80, 0.90, 0.85], 1: [0.82, 0.88, 0.87], 2: [0.79, 0.86, 0.86]},
    ("sgd", None, "mlp"): {0: [0.60, 0.70, 0.75], 1: [0.62, 0.72, 0.70], 2: [0.58, 0.69, 0.74]},
    ("mas", 0.3, "mlp"): {0: [0.85, 0.91, 0.90], 1: [0.84, 0.93, 0.92], 2: "pending"},
    ("mas", 0.7, "mlp"): {0: [0.81, 0.89, 0.88], 1: [0.83, 0.90, 0.90], 2: "diverged"},
    ("adam", None, "cnn"): {0: [0.70, 0.75, 0.74], 1: [0.71, 0.77, 0.76]},
    ("mas", 0.3, "cnn"): {0: [0.72, 0.80, 0.78], 1: [0.70, 0.76, 0.79]},
}


def spec_for(optimizer, lam, model, seed):
    extra = dict(lambda_adam=lam, lambda_sgd=round(1 - lam, 10)) if optimizer == "mas" else {}
    return RunSpec(benchmark="b", dataset="digits", model=model, optimizer=optimizer, lr=0.01, epochs=3, seed=seed,
                   **extra)


def epoch_row(epoch, acc, loss=1.0):
    return dict(epoch=epoch, train_loss=loss, train_acc=acc, test_loss=1 - acc, test_acc=acc, lr=0.01,
                lambda_adam=None, lambda_sgd=None, seconds=1.0, samples_per_second=100.0)


def fill(store, runs=RUNS, *, stored: Callable[[dict], dict] | None = None, environment: dict | None = None) -> None:
    """Each run of ``runs`` with its epochs and status ("pending": never claimed; "diverged": one infinite loss).

    ``stored`` changes the values written for a run (strings no spec would make); ``environment``: the values
    ``Store.start`` records (none by default: the runs look never started).
    """
    for (optimizer, lam, model), seeds in runs.items():
        for seed, accs in seeds.items():
            values = run_values(spec_for(optimizer, lam, model, seed))
            run = store.ensure_run(stored(values) if stored is not None else values)
            if accs == "pending":
                continue
            store.claim(run.id, "w", stale_after=60)
            if environment is not None:
                store.start(run.id, "w", **environment)
            if accs == "diverged":
                store.record_epoch(run.id, "w", epoch_row(1, 0.5, loss=float("inf")))
                store.finish(run.id, "w", "diverged", "non-finite training loss")
                continue
            for epoch, acc in enumerate(accs, start=1):
                store.record_epoch(run.id, "w", epoch_row(epoch, acc))
            store.finish(run.id, "w", "completed")
