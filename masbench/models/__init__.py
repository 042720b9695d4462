"""Models by name: ``mlp``, ``cnn`` (small, for CPU), ``resnet18``, ``resnet34`` (CIFAR stem), ``bert``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from masbench.errors import MasbenchError

DEFAULT_PRETRAINED = "bert-base-uncased"


@dataclass(frozen=True)
class ModelEntry:
    kind: str  # the dataset kind it takes: "image" or "text"
    description: str
    build: Callable[..., nn.Module]  # (dataset, pretrained) -> module


def _mlp(dataset, pretrained):
    from masbench.models.small import MLP

    return MLP(dataset.input_shape, dataset.num_classes)


def _cnn(dataset, pretrained):
    from masbench.models.small import SmallCNN

    return SmallCNN(dataset.input_shape, dataset.num_classes)


def _resnet(depth):
    def build(dataset, pretrained):
        from masbench.models.resnet import cifar_resnet

        return cifar_resnet(depth, dataset.input_shape, dataset.num_classes)

    return build


def _bert(dataset, pretrained):
    from masbench.models.text import SequenceClassifier

    return SequenceClassifier(pretrained or DEFAULT_PRETRAINED, dataset.num_classes)


MODELS: dict[str, ModelEntry] = {
    "mlp": ModelEntry("image", "2 hidden layers of 256 units", _mlp),
    "cnn": ModelEntry("image", "3 conv-BN-ReLU blocks", _cnn),
    "resnet18": ModelEntry("image", "torchvision ResNet18, 3x3 stem, no max-pool", _resnet(18)),
    "resnet34": ModelEntry("image", "torchvision ResNet34, 3x3 stem, no max-pool", _resnet(34)),
    "bert": ModelEntry("text", "AutoModelForSequenceClassification from --pretrained", _bert),
}


def model_entry(name: str) -> ModelEntry:
    try:
        return MODELS[name]
    except KeyError:
        raise MasbenchError(f"Unknown model: {name!r} (valid: {', '.join(MODELS)})") from None


def build_model(name: str, dataset, pretrained: str | None = None) -> nn.Module:
    """Model ``name`` sized for ``dataset`` (its input shape and number of classes)."""
    entry = model_entry(name)
    if entry.kind != dataset.kind:
        raise MasbenchError(f"model {name!r} takes {entry.kind} data, but dataset {dataset.name!r} is {dataset.kind}")
    return entry.build(dataset, pretrained)


__all__ = ["DEFAULT_PRETRAINED", "MODELS", "build_model", "model_entry"]
