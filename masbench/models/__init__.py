"""Models by name: ``mlp``, ``cnn`` (small, for CPU), ``resnet18``, ``resnet34`` (CIFAR stem), ``bert``.

Beyond these (``masbench.models.external``): ``tv:NAME`` (torchvision's classifiers), an import path
``package.module:function`` and plugins' models, resolved when a spec naming them is validated.
"""

from __future__ import annotations


from torch import nn

from masbench.errors import MasbenchError
from masbench.models.entry import ModelEntry

DEFAULT_PRETRAINED = "bert-base-uncased"


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
    "mlp": ModelEntry(("image", "tabular"), "2 hidden layers of 256 units", _mlp),
    "cnn": ModelEntry(("image",), "3 conv-BN-ReLU blocks", _cnn),
    "resnet18": ModelEntry(("image",), "torchvision ResNet18, 3x3 stem, no max-pool", _resnet(18)),
    "resnet34": ModelEntry(("image",), "torchvision ResNet34, 3x3 stem, no max-pool", _resnet(34)),
    "bert": ModelEntry(("text",), "AutoModelForSequenceClassification from --pretrained", _bert),
}


def model_entry(name: str) -> ModelEntry:
    if name in MODELS:
        return MODELS[name]
    from masbench.models.external import external_entry

    entry = external_entry(name)
    if entry is None:
        from masbench.models.external import TV, classifiers
        from masbench.text.shown import did_you_mean

        hint = did_you_mean(name, [*MODELS, *(TV + arch for arch in classifiers())])
        raise MasbenchError(f"Unknown model: {name!r} ({hint}valid: {', '.join(MODELS)}, tv:NAME for a torchvision "
                            f"classifier, an import path package.module:function, or a plugin's: see masbench "
                            f"list models)")
    return entry


def model_settings(name: str, pretrained: str | None) -> dict[str, str]:
    """What besides its name makes model ``name`` a cell: tv:'s weights, resolved; MasbenchError for bad ones."""
    entry = model_entry(name)
    if entry.weights is None or pretrained is None:
        return {}
    return {"pretrained": entry.weights(pretrained)}


def build_model(name: str, dataset, pretrained: str | None = None) -> nn.Module:
    """Model ``name`` sized for ``dataset`` (its input shape and number of classes)."""
    entry = model_entry(name)
    if dataset.kind not in entry.kinds:
        raise MasbenchError(f"model {name!r} takes {' or '.join(entry.kinds)} data, but dataset {dataset.name!r} "
                            f"is {dataset.kind}")
    model = entry.build(dataset, pretrained)
    if name not in MODELS:  # a user's, a plugin's or torchvision's: its outputs must be one logit per class
        from masbench.models.external import check_outputs

        check_outputs(model, dataset, name)
    return model


__all__ = ["DEFAULT_PRETRAINED", "MODELS", "ModelEntry", "build_model", "model_entry", "model_settings"]
