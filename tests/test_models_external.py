"""Models by import path and torchvision's classifiers by ``tv:NAME``: they train, they are cells, and
torchvision's weights load from its cache (a download refused offline is one line)."""

from __future__ import annotations

import sqlite3
import sys
import urllib.error
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from masbench.cli import app
from masbench.errors import MasbenchError
from masbench.models import build_model
from masbench.seeds import stream_seed
from masbench.spec import make_spec

runner = CliRunner()

MODELS = '''
import math
from torch import nn


def linear(num_classes, input_shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))


def hidden(num_classes, input_shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 16), nn.ReLU(), nn.Linear(16, num_classes))


def raises(num_classes, input_shape):
    raise RuntimeError("out of ideas")


def too_wide(num_classes, input_shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes + 3))


def flat(num_classes, input_shape):
    return nn.Sequential(nn.Flatten(0), nn.LazyLinear(num_classes))


def wrong_input(num_classes, input_shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(7, num_classes))


class Pair(nn.Module):
    def __init__(self, num_classes, input_shape):
        super().__init__()
        self.head = nn.Linear(math.prod(input_shape), num_classes)

    def forward(self, x):
        return self.head(x.flatten(1)), x


def pair(num_classes, input_shape):
    return Pair(num_classes, input_shape)
'''


@pytest.fixture
def user_models(tmp_path, monkeypatch):
    (tmp_path / "user_models.py").write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    from masbench.models.external import external_entry

    external_entry.cache_clear()
    yield "user_models"
    external_entry.cache_clear()
    sys.modules.pop("user_models", None)


def test_a_model_given_by_import_path_trains_and_is_stored_under_its_path(user_models, tmp_path):
    db = tmp_path / "m.db"
    result = runner.invoke(app, ["run", "--model", "user_models:hidden", "--epochs", "2", "--db", f"sqlite:///{db}",
                                 "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert result.exit_code == 0, result.output
    connection = sqlite3.connect(db)
    assert connection.execute("select model, status from runs").fetchall() == [("user_models:hidden", "completed")]
    losses = [row[0] for row in connection.execute("select train_loss from epochs order by epoch")]
    assert len(losses) == 2 and losses[1] < losses[0]


def test_the_import_path_is_the_cells_identity(user_models):
    linear, hidden, mlp = (make_spec(model=m, epochs=1) for m in ("user_models:linear", "user_models:hidden", "mlp"))
    assert len({linear.config_key, hidden.config_key, mlp.config_key}) == 3
    assert linear.canonical()["model"] == "user_models:linear"
    assert make_spec(model="user_models:linear", epochs=1).key == linear.key


def test_a_function_that_raises_is_one_line_naming_the_call(user_models):
    digits = SimpleNamespace(name="digits", kind="image", num_classes=10, input_shape=(1, 8, 8))
    with pytest.raises(MasbenchError, match=r"^model 'user_models:raises': user_models:raises\(num_classes=10, "
                                            r"input_shape=\(1, 8, 8\)\) failed \(RuntimeError: out of ideas\)$"):
        build_model("user_models:raises", digits)


def test_tv_model_trains_on_an_image_folder(image_folder, tmp_path):
    db = tmp_path / "tv.db"
    result = runner.invoke(app, ["run", "--dataset", f"imagefolder:{image_folder}", "--model", "tv:resnet18",
                                 "--optimizer", "sgd", "--lr", "0.01", "--epochs", "1", "--batch-size", "12",
                                 "--db", f"sqlite:///{db}", "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert result.exit_code == 0, result.output
    assert "11,178,051 parameters" in result.stderr  # ResNet-18 with a 3-class head: 11,176,512 + 512 * 3 + 3
    assert sqlite3.connect(db).execute("select model, status from runs").fetchall() == [("tv:resnet18", "completed")]


def test_tv_weights_are_part_of_the_cell_resolved(image_folder):
    data = f"imagefolder:{image_folder}"
    bare = make_spec(dataset=data, model="tv:resnet18", epochs=1)
    default = make_spec(dataset=data, model="tv:resnet18", pretrained="DEFAULT", epochs=1)
    named = make_spec(dataset=data, model="tv:resnet18", pretrained="IMAGENET1K_V1", epochs=1)
    assert "pretrained" not in bare.canonical() and default.canonical()["pretrained"] == "IMAGENET1K_V1"
    assert default.config_key == named.config_key != bare.config_key
    assert default.resolved_pretrained == "IMAGENET1K_V1" and bare.resolved_pretrained is None


def three_classes(shape=(3, 12, 10)):
    return SimpleNamespace(name="folder", kind="image", num_classes=3, input_shape=shape)


def test_tv_pretrained_loads_torchvisions_weights_and_a_new_head(monkeypatch):
    from torchvision.models import _api, resnet18

    torch.manual_seed(1)
    saved = resnet18().state_dict()  # stands for the file in torch's hub cache
    asked = []
    monkeypatch.setattr(_api, "load_state_dict_from_url", lambda url, *a, **k: asked.append(url) or saved)
    model = build_model("tv:resnet18", three_classes(), "IMAGENET1K_V1")
    assert asked == ["https://download.pytorch.org/models/resnet18-f37072fd.pth"]
    assert torch.equal(model.conv1.weight, saved["conv1.weight"])
    assert torch.equal(model.layer4[1].bn2.running_var, saved["layer4.1.bn2.running_var"])
    assert model.fc.out_features == 3 and model.fc.in_features == 512


def test_tv_pretrained_offline_is_one_line(monkeypatch):
    from torchvision.models import _api

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(_api, "load_state_dict_from_url", offline)
    with pytest.raises(MasbenchError) as error:
        build_model("tv:resnet18", three_classes(), "IMAGENET1K_V1")
    message = str(error.value)
    assert message.startswith("cannot download torchvision's weights ResNet18_Weights.IMAGENET1K_V1 (https://")
    assert "Temporary failure in name resolution" in message and "\n" not in message


def test_tv_refuses_images_it_cannot_take():
    with pytest.raises(MasbenchError, match=r"^model 'tv:resnet18' takes 3-channel images \(C, H, W\); dataset "
                                            r"'folder' has input shape \(1, 8, 8\)$"):
        build_model("tv:resnet18", three_classes((1, 8, 8)))


@pytest.mark.parametrize("function, message", [
    ("too_wide", r"gives outputs of shape \(2, 13\) for inputs of shape \(2, 1, 8, 8\): expected \(2, 10\)"),
    ("pair", r"gives outputs of shape tuple for inputs of shape \(2, 1, 8, 8\): expected \(2, 10\)"),
    ("wrong_input", r"cannot take digits's inputs: a forward pass of shape \(2, 1, 8, 8\) failed \(RuntimeError"),
])
def test_a_model_whose_outputs_are_not_one_logit_per_class_is_refused_in_one_line(user_models, tmp_path, function,
                                                                                   message):
    """13 logits for 10 classes would train without complaint into numbers that mean nothing; a model that
    cannot take the data would fail only after its run was stored."""
    db = tmp_path / "m.db"
    result = runner.invoke(app, ["run", "--model", f"user_models:{function}", "--epochs", "1", "--db",
                                 f"sqlite:///{db}", "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    import re

    assert re.search(message, result.stderr), result.stderr
    if db.exists():
        assert sqlite3.connect(db).execute("select count(*) from runs").fetchone() == (0,)


def test_the_output_check_leaves_the_initial_weights_and_the_rng_alone(user_models):
    from masbench.data import load_dataset
    from masbench.engine.prepare import build_seeded_model

    digits = load_dataset("digits")
    spec = make_spec(model="user_models:hidden", epochs=1)
    model = build_seeded_model(spec, digits)
    after = torch.rand(3)
    torch.manual_seed(stream_seed(spec.seed, "weights"))
    from user_models import hidden

    expected = hidden(num_classes=10, input_shape=(1, 8, 8))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), expected.state_dict().values()))
    assert torch.equal(after, torch.rand(3))
