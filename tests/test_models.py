"""Models: shapes, the CIFAR ResNet stem, and the pre-trained text classifier."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from masbench.errors import MasbenchError
from masbench.models import build_model


def image_data(shape, classes=10):
    return SimpleNamespace(kind="image", name="fake", input_shape=shape, num_classes=classes)


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet18", "resnet34"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_image_models_map_a_batch_to_class_logits(name, shape):
    model = build_model(name, image_data(shape, classes=7))
    assert model(torch.randn(4, *shape)).shape == (4, 7)


@pytest.mark.parametrize("name, millions", [("resnet18", 11.17), ("resnet34", 21.28)])
def test_cifar_resnets_have_a_3x3_stride_1_stem_and_no_max_pool(name, millions):
    model = build_model(name, image_data((3, 32, 32)))
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(millions, abs=0.01)
    # No early downsampling: the first stage still sees 32x32 maps.
    features = model.layer1(model.relu(model.bn1(model.conv1(torch.randn(1, 3, 32, 32)))))
    assert features.shape[-2:] == (32, 32)


def test_bert_from_a_local_checkpoint(minilm_path):
    model = build_model("bert", SimpleNamespace(kind="text", name="t", num_classes=3), minilm_path)
    inputs = {"input_ids": torch.tensor([[101, 7592, 102], [101, 2088, 102]]), "attention_mask": torch.ones(2, 3).long()}
    assert model(inputs).shape == (2, 3)
    assert model.model.config.num_hidden_layers == 6


def test_model_and_data_kinds_must_match():
    with pytest.raises(MasbenchError, match="model 'bert' takes text data, but dataset 'fake' is image"):
        build_model("bert", image_data((3, 32, 32)))
    with pytest.raises(MasbenchError, match="Unknown model: 'vgg'"):
        build_model("vgg", image_data((3, 32, 32)))


def test_a_hub_name_offline_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MasbenchError, match="cannot load the pretrained model 'not-a-cached/model' offline: pass --pretrained"):
        build_model("bert", SimpleNamespace(kind="text", name="t", num_classes=2), "not-a-cached/model")
