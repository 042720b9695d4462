"""Performance profiles (``plot --kind profile``): rho(tau) against a computation by hand from the epoch rows."""

from __future__ import annotations

import math
import statistics

import pytest
from typer.testing import CliRunner

from masbench.cli import app
from masbench.store import Store

runner = CliRunner()

C = "completed"
# (optimizer, model) -> {seed: (status, [(test_acc, seconds) per epoch])}; target 50.
RUNS = {
    # mlp: mas fastest (median 2.0), adam 3.0 (ratio 1.5), sgd reaches on 1 seed of 3 only (median inf).
    ("mas", "mlp"): {0: (C, [(0.4, 1.0), (0.6, 1.0)]), 1: (C, [(0.5, 2.0)]), 2: (C, [(0.3, 1.5), (0.7, 1.5)])},
    ("adam", "mlp"): {0: (C, [(0.4, 1.5), (0.6, 1.5)]), 1: (C, [(0.6, 3.5)]), 2: (C, [(0.55, 2.5)])},
    ("sgd", "mlp"): {0: (C, [(0.6, 0.5)]), 1: (C, [(0.2, 1.0), (0.3, 1.0)]), 2: (C, [(0.1, 1.0)])},
    # cnn: adam fastest (1.0), mas 3.5 (ratio 3.5), no sgd cell at all.
    ("mas", "cnn"): {0: (C, [(0.1, 2.0), (0.5, 1.5)]), 1: (C, [(0.6, 3.5)]), 2: (C, [(0.6, 4.0)])},
    ("adam", "cnn"): {0: (C, [(0.9, 1.0)]), 1: (C, [(0.9, 1.0)]), 2: ("failed", [(0.1, 0.1)])},
    # resnet18: nobody reaches the target (every ratio inf).
    ("mas", "resnet18"): {0: (C, [(0.1, 1.0)])},
    ("adam", "resnet18"): {0: (C, [(0.2, 1.0)]), 1: (C, [(0.3, 1.0)])},
}
TARGET = 50.0


def by_hand(by="seconds"):
    """t(c, w), r(c, w) and rho_c(tau) by plain loops over RUNS (time counted in ``by``)."""
    times = {}
    for (optimizer, model), seeds in RUNS.items():
        per_seed = []
        for status, epochs in seeds.values():
            if status != C:
                continue
            total, reached = 0.0, math.inf
            for acc, seconds in epochs:
                total += seconds if by == "seconds" else 1
                if acc >= TARGET / 100:
                    reached = total
                    break
            per_seed.append(reached)
        times[(optimizer, model)] = statistics.median(per_seed)
    configs = sorted({o for o, _ in RUNS})
    workloads = sorted({m for _, m in RUNS})
    ratio = {}
    for w in workloads:
        best = min(times.get((c, w), math.inf) for c in configs)
        for c in configs:
            t = times.get((c, w), math.inf)
            ratio[(c, w)] = math.inf if math.isinf(t) else t / best
    return configs, workloads, ratio


@pytest.fixture
def db(tmp_path):
    from test_report_target import fill

    url = f"sqlite:///{tmp_path / 'p.db'}"
    fill(Store(url), RUNS)
    return url


def test_profile_matches_a_computation_by_hand(db):
    from masbench.report.plot_profile import profile_frame
    from masbench.report import run_accuracies
    from masbench.report.aggregate import LABELS

    store = Store(db, read_only=True)
    profile, ratio, _, _ = profile_frame(store, run_accuracies(store), TARGET)
    configs, workloads, want = by_hand()
    label = {"adam": LABELS["adam"], "sgd": LABELS["sgd"], "mas": "MAS λa=0.5, λs=0.5"}
    assert sorted(profile.columns) == sorted(label[c] for c in configs)
    assert len(ratio) == len(workloads) == 3
    assert want[("mas", "mlp")] == 1 and want[("adam", "mlp")] == 1.5 and want[("mas", "cnn")] == 3.5
    for tau in (1.0, 1.49, 1.5, 2.0, 3.49, 3.5, 4.0):
        row = profile.loc[profile.index[abs(profile.index - tau).argmin()]]
        tau_used = row.name
        for c in configs:
            expected = sum(want[(c, w)] <= tau_used for w in workloads) / len(workloads)
            assert row[label[c]] == pytest.approx(expected), (c, tau_used)
    assert profile.index.min() == 1.0 and profile.index.max() == 4.0


def test_plot_profile_writes_an_image(db, tmp_path):
    out = tmp_path / "profile.png"
    result = runner.invoke(app, ["plot", "--kind", "profile", "--target", "50", "--output", str(out), "--db", db])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, message", [
    (["--kind", "profile"], "needs --target"),
    (["--kind", "profile", "--target", "150"], "Invalid --target"),
    (["--kind", "curves", "--target", "50"], "--target goes with --kind profile"),
])
def test_bad_profile_input_is_one_line(db, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)  # no benchmarks.yaml here: the packaged one has no targets
    result = runner.invoke(app, ["plot", *args, "--output", str(tmp_path / "x.png"), "--db", db])
    assert result.exit_code == 1 and message in result.output, result.output
    assert not (tmp_path / "x.png").exists()


def test_a_profile_over_epochs_matches_a_computation_by_hand(db):
    from masbench.report import run_accuracies
    from masbench.report.aggregate import LABELS
    from masbench.report.plot_profile import profile_frame

    store = Store(db, read_only=True)
    _, ratio, _, noise = profile_frame(store, run_accuracies(store), TARGET, by="epochs")
    configs, workloads, expected = by_hand("epochs")
    assert expected != by_hand("seconds")[2]  # the two counts rank these runs differently
    label = {"adam": LABELS["adam"], "sgd": LABELS["sgd"], "mas": "MAS λa=0.5, λs=0.5"}
    for c in configs:
        for w in workloads:
            assert ratio.loc[("t", "digits", w), label[c]] == pytest.approx(expected[(c, w)])
    assert noise == ""  # epochs are not wall time: no note


def test_noisy_seconds_are_named_in_the_report_and_the_profile(db, tmp_path):
    # adam on mlp: epochs of 1.5, 3.5 and 2.5 s (first epochs of longer runs left out): 2.33x; mas on cnn 2.67x.
    report = runner.invoke(app, ["report", "--target", "50", "--db", db])
    assert report.exit_code == 0, report.output
    assert "Noisy timings: one epoch of 2 cell(s) took up to 2.7x as long" in " ".join(report.stdout.split())
    plot = runner.invoke(app, ["plot", "--kind", "profile", "--target", "50", "--db", db,
                               "--output", str(tmp_path / "p.png")])
    assert plot.exit_code == 0 and "Note: noisy timings" in plot.stderr
    quiet = runner.invoke(app, ["plot", "--kind", "profile", "--target", "50", "--target-by", "epochs", "--db", db,
                                "--output", str(tmp_path / "p.png")])
    assert quiet.exit_code == 0 and quiet.stderr == ""
    wrong = runner.invoke(app, ["plot", "--kind", "curves", "--target-by", "epochs", "--db", db,
                                "--output", str(tmp_path / "c.png")])
    assert wrong.exit_code == 1 and "--target-by goes with --kind profile" in wrong.stderr
    bad = runner.invoke(app, ["plot", "--kind", "profile", "--target-by", "hours", "--db", db,
                              "--output", str(tmp_path / "p.png")])
    assert bad.exit_code == 1 and "Invalid --target-by: 'hours' (valid: seconds, epochs)" in bad.stderr


def test_even_seconds_make_no_noise_note(tmp_path):
    from report_fixtures import fill

    url = f"sqlite:///{tmp_path / 'even.db'}"
    fill(Store(url))  # every epoch 1.0 s
    report = runner.invoke(app, ["report", "--target", "80", "--db", url])
    assert report.exit_code == 0 and "to target 80%" in report.stdout and "noisy" not in report.stdout
