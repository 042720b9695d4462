"""Rows edited by hand, or corrupted (issue 21, item 4): a report checks every row it uses, and ``masbench check``.

Each case corrupts one run of the filled store: run 2 is ``adam[lr=0.01]`` on digits/mlp, seed 1 (best test
accuracies of its cell's seeds 0, 1, 2: 90, 88, 86). Left out, its cell keeps seeds 0 and 2: n 2, avg 88.00,
std 2.83 (the csv row below), flagged "1 left out", and the run is named on stderr with its column and value.
"""

import pytest

from cases import Case

RUN_2 = "(select id from runs where name = 'adam[lr=0.01]' and model = 'mlp' and seed = 1)"
NAMED = "run 2 (adam[lr=0.01] seed 1): "
# The csv row of adam on digits/mlp without run 2: n, avg, std, max, seeds and their accuracies ... ci95, left_out.
CSV_ROW = ("best,2,88.0,2.8284,90.0,0 2,90.000000 86.000000,", ',,"2/3 seeds, 1 left out",1\n')  # no CI at n<3
FOOTER = "1 run left out of the numbers: failing the store"  # the apostrophe is escaped in html


def epochs_of_run_2(assignment: str, where: str = ""):
    def setup(env):
        env.sql(f"UPDATE epochs SET {assignment} WHERE run_id = {RUN_2}" + (f" AND {where}" if where else ""))
    return setup


def run_2(assignment: str, sqlite_only: bool = False):
    def setup(env):
        if sqlite_only and not env.db.startswith("sqlite"):
            pytest.skip("PostgreSQL's json type refuses malformed JSON when it is written")
        env.sql(f"UPDATE runs SET {assignment} WHERE id = {RUN_2}")
    return setup


def infinite_train_loss(env):
    env.sql(f"UPDATE epochs SET train_loss = :inf WHERE run_id = {RUN_2} AND epoch = 1", inf=float("inf"))


def infinite_samples_per_second(env):
    env.sql(f"UPDATE epochs SET samples_per_second = :inf WHERE run_id = {RUN_2} AND epoch = 1", inf=float("inf"))


def negative_seconds_in_two_runs(env):
    env.sql("UPDATE epochs SET seconds = -100 WHERE epoch = 1 AND run_id IN "
            "(select id from runs where name = 'adam[lr=0.01]' and model = 'mlp' and seed < 2)")


def orphan_epochs(env):
    if not env.db.startswith("sqlite"):
        pytest.skip("PostgreSQL enforces the foreign key: no epoch row can name a missing run")
    env.sql("INSERT INTO epochs (run_id, epoch, train_loss, train_acc, test_loss, test_acc, lr, seconds, "
            "samples_per_second) VALUES (999, 1, 1.0, 0.5, 1.0, 0.5, 0.01, 1.0, 10.0)")


def summary_of_run_2_edited(env):
    env.sql(f"UPDATE summaries SET best = 0.999 WHERE run_id = {RUN_2}")


def summary_repaired(env):
    import subprocess
    import sys

    summary_of_run_2_edited(env)
    done = subprocess.run([sys.executable, "-m", "masbench", "check", "--repair", "--db", env.db], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr


def text_epoch_of_run_2(env):
    if not env.db.startswith("sqlite"):
        pytest.skip("PostgreSQL's integer column refuses text")
    epochs_of_run_2("epoch = 'x'", "epoch = 2")(env)


def run_2_not_exported(env):
    (key,), = env.sql(f"SELECT key FROM runs WHERE id = {RUN_2}")
    exported = [p.parent.name for p in (env.dir / "tb").rglob("masbench.json")]
    assert len(exported) == 15 and not [name for name in exported if name.endswith(key)], exported


def no_file(env):
    assert not (env.dir / "none.db").exists()


ACC_2 = epochs_of_run_2("test_acc = 2.0", "epoch = 2")


def fraction_target_file(env):
    (env.dir / "benchmarks.yaml").write_text("benchmarks:\n  b:\n    dataset: digits\n    models: [mlp]\n"
                                             "    target: 0.9\n")
ACC_2_NAMED = NAMED + "epochs.test_acc = 2.0 at epoch 2 is not a number in [0, 1]; left out"
CSV = ("report", "--table", "--format", "csv", "--db", "{db}")
CHECK = ("check", "--db", "{db}")

CASES = [
    # test_acc 2.0: averaged to 148%, ranked first
    Case("rows-acc-above-1-csv", CSV, ACC_2, output=CSV_ROW, stderr=(ACC_2_NAMED,)),
    Case("rows-acc-above-1-table", ("report", "--table", "--format", "markdown", "--db", "{db}"), ACC_2,
         output=("| Adam |  |  | 88.00 | 90.00 | 2.83 | n<3 | 2 | 2/3 seeds, 1 left out |", FOOTER),
         absent=("200.00",), stderr=(ACC_2_NAMED,)),
    Case("rows-acc-above-1-rich", ("report", "--db", "{db}"), ACC_2, output=("88.00", "1 left out", FOOTER),
         absent=("200.00", "125.33"), stderr=(ACC_2_NAMED,)),
    Case("rows-acc-above-1-json", ("report", "--format", "json", "--db", "{db}"), ACC_2,
         output=('"avg_acc": 88.0,', '"left_out": 1,', '"flags": "2/3 seeds, 1 left out"'), stderr=(ACC_2_NAMED,)),
    Case("rows-acc-above-1-html", ("report", "--format", "html", "--db", "{db}"), ACC_2,
         output=(FOOTER, "2/3 seeds, 1 left out"), stderr=(ACC_2_NAMED,)),
    Case("rows-acc-above-1-leaderboard", ("report", "--leaderboard", "--format", "csv", "--db", "{db}"), ACC_2,
         output=("2,88.0,2.8284,,90.0,\"2/3 seeds, 1 left out\"",), stderr=(ACC_2_NAMED,)),
    Case("rows-acc-above-1-compare", ("compare", "adam", "sgd", "--model", "mlp", "--db", "{db}"), ACC_2,
         output=("88.00 ± 2.83",), absent=("125.33",), stderr=(ACC_2_NAMED,)),
    Case("rows-acc-above-1-plot", ("plot", "--output", "{dir}/curves.png", "--model", "mlp", "--db", "{db}"), ACC_2,
         output=("plot written to",), stderr=(ACC_2_NAMED,)),
    Case("rows-acc-above-1-check", CHECK, ACC_2, code=1,
         output=(NAMED + "epochs.test_acc = 2.0 at epoch 2 is not a number in [0, 1]\n",
                 "1 problem(s) in 1 of 16 runs (43 epochs)")),
    Case("rows-acc-negative-check", CHECK, epochs_of_run_2("train_acc = -0.5", "epoch = 1"), code=1,
         output=(NAMED + "epochs.train_acc = -0.5 at epoch 1 is not a number in [0, 1]",)),
    Case("rows-val-acc-above-1-csv", CSV, epochs_of_run_2("val_acc = 1.5", "epoch = 3"), output=CSV_ROW,
         stderr=(NAMED + "epochs.val_acc = 1.5 at epoch 3 is not a number in [0, 1]; left out",)),
    # test_acc 'NaN' (text on SQLite, whose max ranks text above numbers; NaN on PostgreSQL)
    Case("rows-acc-nan-csv", CSV, epochs_of_run_2("test_acc = 'NaN'", "epoch = 1"), output=CSV_ROW,
         stderr=("at epoch 1 is not a number in [0, 1]; left out",)),
    Case("rows-acc-nan-check", CHECK, epochs_of_run_2("test_acc = 'NaN'", "epoch = 1"), code=1,
         output=(NAMED + "epochs.test_acc = ",)),
    # a completed run with no accuracy, or with no epochs: counted in n, while the mean is one seed's
    Case("rows-completed-without-accuracy-csv", ("report", "--format", "csv", "--metric", "final", "--db", "{db}"),
         epochs_of_run_2("test_acc = NULL", "epoch = 3"), output=("final,2,85.5,0.7071,86.0,0 2,85.000000 86.000000,",),
         stderr=(NAMED + "epochs.test_acc is NULL in 1 epoch(s) of the completed run; left out",)),
    Case("rows-completed-without-epochs-csv", CSV, lambda env: env.sql(f"DELETE FROM epochs WHERE run_id = {RUN_2}"),
         output=CSV_ROW, stderr=(NAMED + "runs.status = 'completed' but the run has 0 epoch row(s), not every epoch from 1 to its "
                         "last (none); left out",)),
    Case("rows-completed-missing-an-epoch-check", CHECK,
         lambda env: env.sql(f"DELETE FROM epochs WHERE run_id = {RUN_2} AND epoch = 2"), code=1,
         output=(NAMED + "runs.status = 'completed' but the run has 2 epoch row(s), not every epoch from 1 to its "
                         "last (3)",)),
    # an epoch 9 in a 3-epoch run: became the best
    Case("rows-epoch-out-of-range-csv", CSV, epochs_of_run_2("epoch = 9, test_acc = 0.99", "epoch = 3"),
         output=CSV_ROW, absent=("99.0",),
         stderr=(NAMED + "epochs.epoch = 9 is not an integer in 1..3; runs.status = 'completed' but the run has 3 epoch "
                 "row(s), not every epoch from 1 to its last (9); left out",)),
    Case("rows-epoch-zero-check", CHECK, epochs_of_run_2("epoch = 0", "epoch = 1"), code=1,
         output=(NAMED + "epochs.epoch = 0 is not an integer in 1..3",)),
    # negative seconds: gave a negative time to target
    Case("rows-negative-seconds-target", ("report", "--format", "csv", "--target", "85", "--db", "{db}"),
         negative_seconds_in_two_runs, output=("best,1,86.0,,86.0,2,86.000000,", ",2,85.0,1,2.0,2.0\n"),
         absent=("-98",), stderr=("epochs.seconds = -100.0 at epoch 1 is not a finite number >= 0; left out",)),
    Case("rows-negative-seconds-check", CHECK, epochs_of_run_2("seconds = -1", "epoch = 2"), code=1,
         output=(NAMED + "epochs.seconds = -1.0 at epoch 2 is not a finite number >= 0",)),
    # a loss not finite in a run not marked diverged (the diverged run's infinite loss is no problem)
    Case("rows-infinite-loss-csv", CSV, infinite_train_loss, output=CSV_ROW,
         stderr=(NAMED + "epochs.train_loss = inf at epoch 1 is not finite, and the run is not marked diverged; "
                         "left out",)),
    # bad JSON in config or versions: one line with no run id or column, and the whole report lost
    Case("rows-config-not-json-csv", CSV, run_2("config = '{bad'", sqlite_only=True), output=CSV_ROW,
         stderr=(NAMED + "runs.config = '{bad' is not a JSON object; left out",)),
    Case("rows-config-not-json-show", ("show", "2", "--db", "{db}"), run_2("config = '{bad'", sqlite_only=True),
         output=("runs.config = '{bad' is not a JSON object",)),
    Case("rows-config-not-an-object-csv", CSV, run_2("config = '[1]'"), output=CSV_ROW,
         stderr=("is not a JSON object; left out",)),
    Case("rows-versions-not-json-html", ("report", "--format", "html", "--db", "{db}"),
         run_2("versions = '{bad'", sqlite_only=True), output=(FOOTER,),
         stderr=(NAMED + "runs.versions = '{bad' is neither a JSON object nor null; left out",)),
    Case("rows-versions-not-json-check", CHECK, run_2("versions = '{bad'", sqlite_only=True), code=1,
         output=(NAMED + "runs.versions = '{bad' is neither a JSON object nor null",)),
    # an empty config_key: a pandas reshape error
    Case("rows-empty-config-key-csv", CSV, run_2("config_key = ''"),
         output=(CSV_ROW[0], "adam[lr=0.01],,,1.0,0.0,,best,0,,,,,,"),  # its own cell, with no seed
         stderr=(NAMED + "runs.config_key = '' is blank; left out",)),
    Case("rows-empty-config-key-significance", ("report", "--significance", "--format", "csv", "--db", "{db}"),
         run_2("config_key = ''"), output=CSV_ROW[:1], stderr=(NAMED + "runs.config_key = '' is blank; left out",)),
    Case("rows-blank-name-check", CHECK, run_2("name = ' '"), code=1,
         output=("run 2 (' ' seed 1): runs.name = ' ' is blank",)),
    # masbench check on a store that holds no problem (the diverged run's infinite loss included), and none at all
    Case("rows-check-clean", CHECK, output=("no problems: 16 runs, 43 epochs",)),
    Case("rows-check-never-creates", ("check", "--db", "sqlite:///{dir}/none.db"), stores=False,
         error="no database at", after=no_file),
    # found by the hostile tester: a left-out run's best in `runs`; a text accuracy in the curves' epochs; a file's
    # target below 1, which the option refuses
    Case("rows-acc-above-1-runs", ("runs", "--format", "csv", "--db", "{db}"), ACC_2,
         output=("2,left out,adam[lr=0.01],1,,",), absent=("200.0",), stderr=(ACC_2_NAMED,)),
    Case("rows-acc-nan-plot", ("plot", "--output", "{dir}/curves.png", "--model", "mlp", "--db", "{db}"),
         epochs_of_run_2("test_acc = 'NaN'", "epoch = 1"), output=("plot written to",),
         stderr=("at epoch 1 is not a number in [0, 1]; left out",)),
    # export copied a corrupt run's values into the tracker: it leaves the run out, as reports do, and says so
    Case("rows-acc-above-1-export-tensorboard", ("export", "tensorboard", "{dir}/tb", "--db", "{db}"), ACC_2,
         output=("15 runs created, 0 updated, 0 already up to date (40 epochs written)",),
         stderr=("1 run left out of the export, as reports leave them out of their numbers: failing the store's "
                 "checks (masbench check --db URL lists every problem)",), after=run_2_not_exported),
    Case("rows-acc-nan-export-tensorboard", ("export", "tensorboard", "{dir}/tb", "--db", "{db}"),
         epochs_of_run_2("test_acc = 'NaN'", "epoch = 1"), output=("15 runs created",),
         stderr=("1 run left out of the export",), after=run_2_not_exported),
    Case("rows-file-target-below-1", ("report", "--table", "--format", "csv", "--db", "{db}"), fraction_target_file,
         absent=("0.9,",), stderr=("target 0.9 is not a test accuracy in percent in [1, 100]: did you mean 90?; its "
                                   "targets are not used",)),
    # the hostile tester's columns that no check covered: a text seed, an unknown status, lr and samples/s
    Case("rows-seed-text-csv", CSV, run_2("seed = 'one'", sqlite_only=True), output=CSV_ROW,
         stderr=("run 2 (adam[lr=0.01] seed 'one'): runs.seed = 'one' is not an integer; left out",)),
    Case("rows-seed-text-check", CHECK, run_2("seed = 'one'", sqlite_only=True), code=1,
         output=("run 2 (adam[lr=0.01] seed 'one'): runs.seed = 'one' is not an integer",)),
    Case("rows-status-unknown-csv", CSV, run_2("status = 'finished'"), output=CSV_ROW,
         stderr=(NAMED + "runs.status = 'finished' is not a status (valid: pending, running, completed, failed, "
                         "diverged, pruned); left out",)),
    Case("rows-lr-negative-check", CHECK, epochs_of_run_2("lr = -0.01", "epoch = 3"), code=1,
         output=(NAMED + "epochs.lr = -0.01 at epoch 3 is not a finite number >= 0",)),
    Case("rows-samples-per-second-infinite-csv", CSV, infinite_samples_per_second,
         output=CSV_ROW, stderr=(NAMED + "epochs.samples_per_second = inf at epoch 1 is not a finite number >= 0; "
                                         "left out",)),
    # epoch rows of a run that runs lacks (deleted by hand with foreign keys off)
    Case("rows-orphan-epochs-check", CHECK, orphan_epochs, code=1,
         output=("run 999 (not in runs): epochs.run_id = 999 is the run of 1 epoch row(s), and runs has no such run",)),
    # the per-run summaries that reports read: one edited by hand is found by check, and --repair rebuilds it
    Case("rows-summary-edited-check", CHECK, summary_of_run_2_edited, code=1,
         output=(NAMED + "summaries.best differs from what the run's epochs give",)),
    Case("rows-summary-edited-repair", ("check", "--repair", "--db", "{db}"), summary_of_run_2_edited,
         output=("no problems: 16 runs, 43 epochs",), stderr=("rebuilt 15 per-run summaries from the epochs",)),
    Case("rows-summary-edited-then-repaired-csv", CSV, summary_repaired,
         output=("b,digits,mlp,adam[lr=0.01],,",), absent=("99.9",)),
    # the hostile tester's second round: a text lambda crashed the table; a text epoch crashed export
    Case("rows-lambda-text-csv", CSV, run_2("lambda_adam = 'x'", sqlite_only=True), output=CSV_ROW,
         stderr=(NAMED + "runs.lambda_adam = 'x' is not a finite number; left out",)),
    Case("rows-lambda-text-table", ("report", "--table", "--db", "{db}"), run_2("lambda_adam = 'x'", sqlite_only=True),
         output=("1 run left out of the numbers",)),
    Case("rows-epoch-text-export-tensorboard", ("export", "tensorboard", "{dir}/tb", "--db", "{db}"),
         text_epoch_of_run_2, output=("15 runs created",),
         stderr=("1 run left out of the export",), after=run_2_not_exported),
]

