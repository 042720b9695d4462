"""Exact thresholds and exact corners (issue 21, items 2 and 3): each case a boundary, one exact outcome.

Targets: every epoch of the adam/mlp cell (3 seeds) is set to one accuracy k/N, and ``report --target`` is
typed with that accuracy's exact digits (reached 3/3) or one example past it (0/3). The gate: a baseline is
saved, the store's adam/mlp accuracies are then lowered by exactly d points, and ``compare --baseline``
must allow a drop equal to ``--tolerance`` and refuse one example more. Corners: ``run`` of a mix corner
records the same train losses as its single optimizer.
"""

from __future__ import annotations

from cases import Case, Env

ADAM_MLP = "SELECT id FROM runs WHERE optimizer = 'adam' AND model = 'mlp'"


def _every_epoch(acc: float):
    def setup(env: Env) -> None:
        env.sql(f"UPDATE epochs SET test_acc = :acc WHERE run_id IN ({ADAM_MLP})", acc=acc)
    return setup


def _target(name: str, acc: float, target: str, reached: int) -> Case:
    """adam/mlp's csv row ends with its seeds' accuracies (all ``acc``), the version, the CI half-width (0.0) and
    flags (none), the target, the seeds that reached it, and the median epochs and seconds to it."""
    from masbench import __version__
    from masbench.text.numbers import acc_text

    accs = " ".join([acc_text(acc * 100)] * 3)
    times = "1.0,1.0" if reached else ","
    tail = f",{accs},{__version__},0.0,,0,{float(target)!r},{reached},{times}"  # ci95_half 0.0, no flags, none left out
    return Case(f"exact-{name}", ("report", "--table", "--format", "csv", "--target", target, "--db", "{db}"),
                setup=_every_epoch(acc), output=(tail,))


def _lowered(drop_points: str, first_seed_extra: int = 0):
    """Save the baseline, then lower every adam/mlp accuracy by ``drop_points`` (seed 0's by ``first_seed_extra``
    more examples of 10^7), each stored as the double nearest its k/10^7, as a run would store it."""
    def setup(env: Env) -> None:
        from typer.testing import CliRunner

        from masbench.cli import app

        saved = CliRunner().invoke(app, ["report", "--table", "--format", "csv", "--output",
                                         str(env.dir / "base.csv"), "--db", env.db])
        assert saved.exit_code == 0, saved.output
        rows = env.sql(f"SELECT e.id, e.test_acc, r.seed FROM epochs e JOIN runs r ON r.id = e.run_id "
                       f"WHERE r.id IN ({ADAM_MLP})")
        for epoch_id, acc, seed in rows:
            k = round(acc * 10**7) - round(float(drop_points) * 10**5) - (first_seed_extra if seed == 0 else 0)
            env.sql("UPDATE epochs SET test_acc = :acc WHERE id = :id", acc=k / 10**7, id=epoch_id)
    return setup


def _gate(name: str, drop: str, tolerance: str | None, regressed: bool, extra: int = 0) -> Case:
    flags = ("--tolerance", tolerance) if tolerance is not None else ()
    args = ("compare", "--baseline", "{dir}/base.csv", *flags, "--db", "{db}")
    if regressed:
        return Case(f"exact-{name}", args, setup=_lowered(drop, extra), code=1,
                    output=("REGRESSION digits/mlp adam", "1 of 6 cells regressed"))
    return Case(f"exact-{name}", args, setup=_lowered(drop, extra), output=("no regression: 6 cells",))


def _same_losses(single: tuple[str, ...]):
    """After the corner's run, run ``single`` into another store: the train losses of each epoch are equal."""
    def after(env: Env) -> None:
        from typer.testing import CliRunner

        from masbench.cli import app

        other = f"sqlite:///{env.dir / 'single.db'}"
        result = CliRunner().invoke(app, ["run", "--dataset", "digits", "--model", "mlp", "--epochs", "1",
                                          *single, "--db", other])
        assert result.exit_code == 0, result.output
        query = ("SELECT e.train_loss, e.test_acc FROM epochs e JOIN runs r ON r.id = e.run_id "
                 "WHERE r.benchmark IS NULL ORDER BY e.epoch")
        corner = env.sql(query)
        single_rows = Env(other, env.dir).sql(query)
        assert corner and corner == single_rows, (corner, single_rows)
    return after


def _corner(name: str, mix: str, single: tuple[str, ...]) -> Case:
    return Case(f"exact-{name}", ("run", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--optimizer", mix,
                                  "--db", "{db}"), output=("completed",), after=_same_losses(single))


CASES = [
    _target("target-566-of-1000-reaches-56.6", 0.566, "56.6", 3),
    _target("target-565-of-1000-misses-56.6", 0.565, "56.6", 0),
    _target("target-814-of-1000-reaches-81.4", 0.814, "81.4", 3),
    _target("target-12-of-1000-reaches-1.2", 0.012, "1.2", 3),
    _target("target-11-of-1000-misses-1.2", 0.011, "1.2", 0),
    Case("exact-target-0.9-is-a-fraction-refused", ("report", "--table", "--target", "0.9", "--db", "{db}"),
         error="Invalid --target: 0.9 (a test accuracy in percent, in [1, 100]: did you mean 90?)"),
    _target("target-5013-of-10000-reaches-50.13", 0.5013, "50.13", 3),
    _target("target-5012-of-10000-misses-50.13", 0.5012, "50.13", 0),
    _target("target-5034-of-10000-reaches-50.340", 0.5034, "50.340", 3),  # trailing zeros typed
    _target("target-all-reaches-100", 1.0, "100", 3),
    _gate("gate-drop-of-exactly-the-tolerance-passes", "1", "1", False),
    _gate("gate-drop-of-exactly-the-default-floor-passes", "1", None, False),
    _gate("gate-drop-of-1.5-at-tolerance-1.5-passes", "1.5", "1.5", False),
    _gate("gate-drop-past-the-tolerance-fails", "1", "0.99", True),
    _gate("gate-drop-of-0.7-at-tolerance-0.7-passes", "0.7", "0.7", False),
    _gate("gate-one-example-of-1000-more-on-one-seed-fails", "1", "1", True, extra=10**4),
    # 1e-5 points more than the tolerance on one seed, 3.3e-6 on the mean: under the old 4-decimal rounding
    _gate("gate-one-example-of-10-million-more-on-one-seed-fails", "1", "1", True, extra=1),
    _corner("corner-mix-adam-1-sgd-0-is-adam", "mix:adam=1,sgd=0", ("--optimizer", "adam")),
    _corner("corner-mix-adam-1-sgd-0-is-mas-at-1-0", "mix:adam=1,sgd=0",
            ("--optimizer", "mas", "--lambda-adam", "1", "--lambda-sgd", "0")),
    _corner("corner-mix-sgd-1-adam-0-is-sgd", "mix:sgd=1,adam=0", ("--optimizer", "sgd")),
    # --- compare with fewer than 2 seeds a side: its mean alone (no "± nan"), a difference with no interval ------
    Case("compare-one-seed-a-side-has-no-std", ("compare", "adam", "sgd", "--where", "seed=0", "--db", "{db}"),
         output=(" 90.00 ", " 75.00 ", " -15.00 ", "verdict: too few seeds for a test (adam: 1, sgd: 1; need 2 on each "
                 "side)", "note: a configuration of fewer than 2 seeds has no std"), absent=("nan", " ± -")),
    Case("compare-no-completed-seed-a-side-is-a-dash", ("compare", "adam", "sgd", "--db", "{db}"),
         setup=lambda env: env.sql("UPDATE runs SET status = 'diverged' WHERE optimizer = 'sgd'"),
         output=(" 88.00 ± 2.00 ", "verdict: too few seeds for a test (adam: 3, sgd: 0; need 2 on each side)",
                 "note: a configuration of fewer than 2 seeds"), absent=("nan",)),
]
