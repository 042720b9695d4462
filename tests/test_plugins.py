"""Plugins: a distribution built here (a package and its ``*.dist-info``) registers an optimizer, a model and a
data set through entry points; ``masbench run`` trains a cell with all three and ``masbench list`` shows them."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from masbench.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent

DEMO = '''
import math

import torch
from torch import nn

from masbench.data.tabular import TabularDataset


class SignSGD(torch.optim.Optimizer):
    """p -= lr * sign(grad)."""

    def __init__(self, params, lr=0.01):
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign(), alpha=-group["lr"])
        return loss


def wide(num_classes, input_shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 32), nn.ReLU(), nn.Linear(32, num_classes))


def blobs(data_dir):
    """Three Gaussian blobs in 4 dimensions: 240 train, 60 test rows."""
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[3.0, 0, 0, 0], [-3.0, 0, 0, 0], [0, 3.0, 0, 0]])
    y = torch.arange(300) % 3
    x = centers[y] + torch.randn(300, 4, generator=g)
    return TabularDataset.from_arrays("blobs", x[:240], y[:240], x[240:], y[240:], ["a", "b", "c"])


blobs.kind = "tabular"


def untyped(data_dir):
    return blobs(data_dir)
'''

ENTRY_POINTS = """
[masbench.optimizers]
signsgd = masbench_demo:SignSGD
adam = masbench_demo:SignSGD
notopt = masbench_demo:wide

[masbench.models]
wide = masbench_demo:wide

[masbench.datasets]
blobs = masbench_demo:blobs
csv = masbench_demo:blobs
broken = masbench_demo_broken:blobs
untyped = masbench_demo:untyped
"""


def write_distribution(site: Path, name: str, version: str, entry_points: str, modules: dict[str, str]) -> Path:
    """What pip would install: the modules and a ``NAME-VERSION.dist-info`` with METADATA and entry_points.txt."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(entry_points)
    for module, source in modules.items():
        (site / f"{module}.py").write_text(source)
    return site


@pytest.fixture
def demo_site(tmp_path) -> Path:
    return write_distribution(tmp_path / "site", "masbench-demo", "0.1", ENTRY_POINTS, {
        "masbench_demo": DEMO,
        "masbench_demo_broken": "raise RuntimeError('needs a GPU cluster')\n",
        "demo_models": "from masbench_demo import wide\n\ndef not_a_module(num_classes, input_shape):\n    return 3\n\n"
                       "def one_argument(shape):\n    return None\n",
    })


def clear_caches() -> None:
    from masbench import plugins
    from masbench.data.plugins import plugin_entry
    from masbench.engine import environment
    from masbench.models.external import external_entry
    from masbench.optim import registry

    for cache in (plugins.clear, plugin_entry.cache_clear, external_entry.cache_clear, registry._resolve.cache_clear,
                  registry._signature.cache_clear, environment._distributions.cache_clear):
        cache()


@pytest.fixture
def installed(demo_site, monkeypatch):
    """The demo distribution on this process's path, and every cache that holds a plugin forgotten after."""
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(demo_site))
    clear_caches()
    yield demo_site
    clear_caches()
    for name in set(sys.modules) - before:
        if name.startswith(("masbench_demo", "masbench_rival", "demo_models")):
            del sys.modules[name]


def rows(db: Path, query: str) -> list[tuple]:
    return sqlite3.connect(db).execute(query).fetchall()


def test_a_cell_with_the_plugins_optimizer_model_and_data_set_trains_in_a_fresh_process(demo_site, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(demo_site), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    db = tmp_path / "plugins.db"
    args = [sys.executable, "-m", "masbench", "run", "--dataset", "blobs", "--model", "wide", "--optimizer", "signsgd",
            "--lr", "0.01", "--epochs", "1", "--batch-size", "32", "--db", f"sqlite:///{db}",
            "--checkpoint-dir", str(tmp_path / "ckpt")]
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("completed signsgd[lr=0.01] on blobs/wide seed 0")
    assert rows(db, "select dataset, model, optimizer, lr, status from runs") == [
        ("blobs", "wide", "signsgd", 0.01, "completed")]
    assert json.loads(rows(db, "select versions from runs")[0][0])["masbench-demo"] == "0.1"
    (epoch, test_acc), = rows(db, "select epoch, test_acc from epochs")
    # 60 test rows: an accuracy is a count of them, and the blobs (3 sigma apart) are learned above chance.
    assert epoch == 1 and round(test_acc * 60, 6) == round(test_acc * 60) and test_acc > 0.5

    listed = subprocess.run([sys.executable, "-m", "masbench", "list", "datasets"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert listed.returncode == 0, listed.stderr
    assert ["blobs", "tabular", "masbench-demo", "0.1"] in [line.split() for line in listed.stdout.splitlines()]


def test_list_shows_the_plugins_with_their_distribution(installed):
    optimizers = runner.invoke(app, ["list", "optimizers"])
    assert optimizers.exit_code == 0, optimizers.output
    lines = {line.split()[0]: line for line in optimizers.stdout.splitlines()}
    assert lines["signsgd"].split(None, 1)[1].split() == ["lr", "+", "optimizer", "args", "masbench-demo", "0.1"]
    assert lines["mas"].endswith("built-in") and lines["mix"].endswith("built-in") and "torch" in lines["sgd"]
    shadowed = [line for line in optimizers.stdout.splitlines() if line.startswith("adam ")]
    assert len(shadowed) == 2 and shadowed[1].endswith("masbench-demo 0.1 (shadowed by the built-in)")

    models = runner.invoke(app, ["list", "models"]).stdout
    assert any(line.split() == ["wide", "image/tabular", "masbench-demo", "0.1"] for line in models.splitlines())
    datasets = runner.invoke(app, ["list", "datasets"]).stdout.splitlines()
    assert any(line.split() == ["blobs", "tabular", "masbench-demo", "0.1"] for line in datasets)
    assert any(line.startswith("broken ") and "broken (masbench run" in line for line in datasets)
    assert any(line.split() == ["csv", "-", "masbench-demo", "0.1", "(shadowed", "by", "the", "built-in)"]
               for line in datasets)


def test_a_built_in_name_wins_over_a_plugins(installed):
    import torch

    from masbench.data import resolve
    from masbench.errors import MasbenchError
    from masbench.optim import optimizer_class, resolve_optimizer

    assert resolve_optimizer("adam") == "adam" and optimizer_class("adam") is torch.optim.Adam
    assert optimizer_class("signsgd").__name__ == "SignSGD"
    with pytest.raises(MasbenchError, match="Unknown dataset: 'csv'"):  # csv:PATH's prefix is built-in
        resolve("csv")


def test_a_sweeps_baselines_take_a_plugins_optimizer(installed):
    from masbench.grid.optimizers import check_baselines

    assert check_baselines(["adam", "signsgd"]) == ["adam", "signsgd"]
    with pytest.raises(ValueError, match="Unknown baseline: 'nosuch'"):
        check_baselines(["nosuch"])


@pytest.mark.parametrize("args, message", [
    (["--dataset", "broken"], "Error: plugin masbench-demo 0.1: its data set 'broken' (masbench_demo_broken:blobs) "
                              "failed to import (RuntimeError: needs a GPU cluster)"),
    (["--dataset", "untyped"], "Error: plugin masbench-demo 0.1: its data set 'untyped' (masbench_demo:untyped) must "
                               "be a function load(data_dir) with an attribute kind, one of image, tabular"),
    (["--optimizer", "notopt"], "Error: plugin masbench-demo 0.1: its optimizer 'notopt' (masbench_demo:wide) is "
                                "<function wide"),
    (["--model", "demo_models:one_argument"], "Error: Invalid model 'demo_models:one_argument': its signature "
                                              "one_argument(shape) does not take (num_classes, input_shape)"),
    (["--model", "demo_models:absent"], "Error: Invalid model 'demo_models:absent': module demo_models has no absent"),
    (["--model", "no_such_module:f"], "Error: Invalid model 'no_such_module:f': no module named no_such_module"),
    (["--model", "demo_models:"], "Error: Invalid model 'demo_models:': not an import path package.module:function"),
    (["--model", "tv:resnet9000"], "Error: Unknown torchvision model 'tv:resnet9000' (did you mean tv:resnet50? valid: tv:NAME for one of"),
    (["--model", "tv:resnet18", "--pretrained", "IMAGENET9K"], "Error: Invalid pretrained 'IMAGENET9K' for model "
                                                               "'tv:resnet18' (valid: IMAGENET1K_V1, DEFAULT)"),
    (["--model", "wide", "--dataset", "cola"], "Error: Invalid model 'wide' for dataset 'cola': it takes image or "
                                               "tabular data, the dataset is text"),
])
def test_bad_plugins_and_paths_are_one_line_and_write_nothing(installed, tmp_path, args, message):
    db = tmp_path / "never.db"
    result = runner.invoke(app, ["run", "--epochs", "1", "--db", f"sqlite:///{db}", *args])
    assert result.exit_code == 1
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    assert not db.exists()


def test_a_model_that_returns_no_module_is_refused_before_any_run_is_written(installed, tmp_path):
    db = tmp_path / "x.db"
    result = runner.invoke(app, ["run", "--model", "demo_models:not_a_module", "--epochs", "1", "--db", f"sqlite:///{db}"])
    assert result.exit_code == 1
    assert result.stderr == ("Error: model 'demo_models:not_a_module': demo_models:not_a_module returned 3, not a "
                             "torch.nn.Module\n")
    assert not db.exists() or rows(db, "select count(*) from runs") == [(0,)]


def test_two_plugins_with_one_name_are_refused_naming_both(installed, tmp_path, monkeypatch):
    rival = write_distribution(tmp_path / "rival", "masbench-rival", "2.0", "[masbench.models]\nwide = masbench_rival:wide\n",
                               {"masbench_rival": "from masbench_demo import wide\n"})
    monkeypatch.syspath_prepend(str(rival))
    clear_caches()
    result = runner.invoke(app, ["run", "--model", "wide", "--epochs", "1", "--db", f"sqlite:///{tmp_path / 'n.db'}"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: model 'wide' is registered by two plugins (")
    assert "masbench-demo 0.1" in result.stderr and "masbench-rival 2.0" in result.stderr
    listed = runner.invoke(app, ["list", "models"]).stdout
    assert "(clashes with masbench-rival 2.0: refused)" in listed


def test_built_in_names_never_look_for_plugins(monkeypatch):
    from masbench import plugins
    from masbench.spec import make_spec

    class Looked(Exception):
        pass

    def no_discovery(what):
        raise Looked(f"looked for {what} plugins")

    monkeypatch.setattr(plugins, "discovered", no_discovery)
    spec = make_spec(dataset="digits", model="mlp", optimizer="radam", epochs=1)
    assert spec.model == "mlp" and spec.optimizer == "radam"
    with pytest.raises(Looked, match="looked for models plugins"):
        make_spec(dataset="digits", model="nosuchmodel")


def test_an_entry_no_option_can_name_is_listed_as_unusable(installed, tmp_path, monkeypatch):
    odd = write_distribution(tmp_path / "odd", "masbench-odd", "1.0",
                             "[masbench.models]\n<b>net = masbench_demo:wide\nok_net = masbench_demo:wide\n"
                             "[masbench.datasets]\na.b = masbench_demo:blobs\n", {})
    monkeypatch.syspath_prepend(str(odd))
    clear_caches()
    models = runner.invoke(app, ["list", "models"])
    assert models.exit_code == 0, models.output
    lines = models.stdout.splitlines()
    assert not any(line.startswith("<b>net") for line in lines)  # never as a name a user could pass
    unusable = [line for line in lines if line.startswith("'<b>net'")]
    assert len(unusable) == 1 and unusable[0].split()[1:4] == ["unusable", "masbench-odd", "1.0"]
    assert "(not a plain name: letters, digits, _ and -" in unusable[0]
    assert any(line.split() == ["ok_net", "image/tabular", "masbench-odd", "1.0"] for line in lines)
    datasets = runner.invoke(app, ["list", "datasets"]).stdout.splitlines()
    assert any(line.startswith("'a.b'") and " unusable " in line for line in datasets)
    # And indeed no option can name it.
    result = runner.invoke(app, ["run", "--model", "<b>net", "--epochs", "1", "--db", f"sqlite:///{tmp_path / 'n.db'}"])
    assert result.exit_code == 1 and "Unknown model" in result.stderr


@pytest.mark.parametrize("path", ["masbench_demo:SignSGD", "masbench_demo.SignSGD", "masbench_demo_again:SignSGD"])
def test_a_plugins_class_by_import_path_is_the_plugins_one_name_and_cell(installed, path):
    (installed / "masbench_demo_again.py").write_text("from masbench_demo import SignSGD\n")  # a re-export
    from masbench.optim import resolve_optimizer
    from masbench.spec import make_spec

    assert resolve_optimizer(path) == "signsgd"
    by_path, by_name = (make_spec(dataset="digits", optimizer=name, lr=0.01, epochs=1) for name in (path, "signsgd"))
    assert by_path.optimizer == "signsgd" and (by_path.key, by_path.config_key) == (by_name.key, by_name.config_key)


def test_a_sweep_naming_a_plugins_optimizer_twice_is_refused_naming_both_spellings(installed, tmp_path):
    result = runner.invoke(app, ["sweep", "--dataset", "digits", "--models", "mlp", "--epochs", "1", "--lambdas", "0.5",
                                 "--baselines", "signsgd,masbench_demo:SignSGD", "--dry-run",
                                 "--db", f"sqlite:///{tmp_path / 'n.db'}"])
    assert result.exit_code == 1
    assert result.stderr == ("Error: sweep 'digits': Invalid baselines: 'signsgd' and 'masbench_demo:SignSGD' are one "
                             "optimizer, signsgd (give it once)\n")


def test_a_plugin_whose_entry_gives_torchs_adam_is_adam(installed, tmp_path, monkeypatch):
    # Two names for one class: a plugin re-registering torch's Adam, and a second plugin name for SignSGD.
    alias = write_distribution(tmp_path / "alias", "masbench-alias", "1.0",
                               "[masbench.optimizers]\nmyadam = torch.optim:Adam\nsign2 = masbench_demo:SignSGD\n", {})
    monkeypatch.syspath_prepend(str(alias))
    clear_caches()
    from masbench.optim import resolve_optimizer
    from masbench.spec import make_spec

    assert resolve_optimizer("myadam") == "adam" and resolve_optimizer("torch.optim:Adam") == "adam"
    assert resolve_optimizer("sign2") == "sign2" and resolve_optimizer("signsgd") == "sign2"  # the first name
    assert resolve_optimizer("masbench_demo:SignSGD") == "sign2"
    specs = [make_spec(dataset="digits", optimizer=name, epochs=1) for name in ("adam", "myadam", "torch.optim:Adam")]
    assert {spec.optimizer for spec in specs} == {"adam"} and len({spec.config_key for spec in specs}) == 1


def test_a_reading_commands_optimizer_names_are_the_registrys_without_importing_the_plugin(installed, tmp_path,
                                                                                           monkeypatch):
    alias = write_distribution(tmp_path / "alias", "masbench-alias", "1.0",
                               "[masbench.optimizers]\nmyadam = torch.optim:Adam\nsign2 = masbench_demo:SignSGD\n", {})
    monkeypatch.syspath_prepend(str(alias))
    clear_caches()
    from masbench.optimizer_names import stored_optimizer

    texts = ("myadam", "sign2", "signsgd", "masbench_demo:SignSGD", "masbench_demo.SignSGD", "torch.optim.Adam")
    found = {text: stored_optimizer(text) for text in texts}
    assert "masbench_demo" not in sys.modules  # metadata only: the plugin's code never ran
    from masbench.optim import resolve_optimizer

    assert found == {text: resolve_optimizer(text) for text in texts}
    assert found["myadam"] == "adam" and found["masbench_demo:SignSGD"] == "sign2"


def test_a_mix_component_by_a_plugins_path_is_the_plugins_name_and_can_be_written_so(installed):
    from masbench.spec import make_spec

    by_path, by_name = (make_spec(dataset="digits", optimizer=f"mix:adam=0.5,{component}=0.5", epochs=1)
                        for component in ("masbench_demo:SignSGD", "signsgd"))
    assert by_path.name == by_name.name == "mix:adam=0.5,signsgd=0.5[lr=0.001]"
    assert by_path.config_key == by_name.config_key


PATHS = """
from masbench_demo import SignSGD, wide


class Sign(SignSGD):
    \"\"\"SignSGD under another name: a class of its own, named by import path.\"\"\"
"""


@pytest.fixture
def paths_site(installed, tmp_path, monkeypatch):
    """A second distribution, masbench-paths 2.5, whose module (no entry points) is named by import path."""
    site = write_distribution(tmp_path / "paths", "masbench-paths", "2.5", "", {"paths_optim": PATHS})
    (site / "masbench_paths-2.5.dist-info" / "top_level.txt").write_text("paths_optim\n")  # what pip writes
    monkeypatch.syspath_prepend(str(site))
    clear_caches()
    yield site
    sys.modules.pop("paths_optim", None)


def test_a_run_records_the_versions_of_the_distributions_its_code_comes_from(paths_site, tmp_path):
    from masbench.engine.environment import versions
    from masbench.spec import make_spec

    spec = make_spec(dataset="blobs", model="paths_optim:wide", optimizer="paths_optim:Sign", lr=0.01, epochs=1)
    found = versions([spec])
    assert (found["masbench-paths"], found["masbench-demo"], found["torch"]) == ("2.5", "0.1", versions()["torch"])
    built_in = versions([make_spec(dataset="digits", model="mlp", optimizer="adam", epochs=1)])
    assert built_in == versions() and "masbench-paths" not in built_in and "masbench-demo" not in built_in

    db = tmp_path / "v.db"
    result = runner.invoke(app, ["run", "--dataset", "blobs", "--model", "paths_optim:wide", "--optimizer",
                                 "paths_optim:Sign", "--lr", "0.01", "--epochs", "1", "--batch-size", "64",
                                 "--db", f"sqlite:///{db}", "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert result.exit_code == 0, result.output
    stored = json.loads(rows(db, "select versions from runs")[0][0])
    assert stored["masbench-paths"] == "2.5" and stored["masbench-demo"] == "0.1"
