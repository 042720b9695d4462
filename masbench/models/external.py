"""Models that masbench does not define: torchvision's classifiers, import paths and plugins.

``tv:NAME`` is torchvision's classifier ``NAME`` (``tv:resnet50``), built with the data set's number of
classes and no weights; ``--pretrained WEIGHTS`` (``DEFAULT``, ``IMAGENET1K_V2``, ...) loads torchvision's
weights instead, downloaded once into torch's hub cache, and gives the last linear layer the data set's
classes. ``package.module:function`` is any function ``function(num_classes, input_shape) -> nn.Module``
(``input_shape`` without the batch dimension), for image and tabular data; a plugin's model
(``masbench.plugins``) is such a function registered under a name.

The cell's identity is the name as written (and the weights' resolved name): masbench cannot tell that
the code behind an import path or a plugin changed, so a changed model needs a new name (a new function,
or a plugin's new entry) to be a new cell.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from typing import Any

from torch import nn

from masbench.errors import MasbenchError
from masbench.models.entry import ModelEntry
from masbench.plugins import WHERE_FROM, NoModule, import_attribute
from masbench.text.shown import did_you_mean, shown

TV = "tv:"
IMAGE_AND_TABULAR = ("image", "tabular")
_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


@functools.cache
def external_entry(name: str):
    """The ``ModelEntry`` of a ``tv:`` name, an import path or a plugin's name; None for any other name."""
    if name.startswith(TV):
        return _torchvision(name)
    if ":" in name:
        return _by_path(name)
    from masbench.plugins import find, load

    try:
        plugin = find("models", name)
        if plugin is None:
            return None
        function = load(plugin)
    except ValueError as error:
        raise MasbenchError(str(error)) from None
    _check_signature(function, f"plugin {plugin.source}: its model {shown(name)} ({plugin.value})")
    return _entry(f"{plugin.value}", function, plugin.source, name)


def _by_path(name: str):
    if not _PATH.fullmatch(name):
        raise MasbenchError(f"Invalid model {shown(name)}: not an import path package.module:function")
    module_name, attribute = name.split(":")
    try:
        found = import_attribute(module_name, attribute, f"Invalid model {shown(name)}")
    except NoModule:
        raise MasbenchError(f"Invalid model {shown(name)}: no module named {module_name} ({WHERE_FROM})") from None
    except ValueError as error:
        raise MasbenchError(str(error)) from None
    _check_signature(found, f"Invalid model {shown(name)}")
    return _entry(name, found, "import path", name)


def _check_signature(function: Any, label: str) -> None:
    """``function`` takes ``num_classes`` and ``input_shape`` as keywords (how masbench calls it)."""
    if not callable(function):
        raise MasbenchError(f"{label}: {shown(function)} is not callable; give a function(num_classes, input_shape) "
                            f"-> torch.nn.Module")
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check before the call
        return
    try:
        signature.bind(num_classes=2, input_shape=(1,))
    except TypeError:
        raise MasbenchError(f"{label}: its signature {getattr(function, '__name__', '')}{signature} does not take "
                            f"(num_classes, input_shape); give a function(num_classes, input_shape) -> "
                            f"torch.nn.Module") from None


def _entry(label: str, function: Callable, source: str, name: str):
    def build(dataset, pretrained):
        shape = tuple(int(n) for n in dataset.input_shape)
        try:
            model = function(num_classes=dataset.num_classes, input_shape=shape)
        # The user's function: whatever it raises is its fault, said in one line (MASBENCH_DEBUG=1 shows it whole).
        except Exception as error:  # noqa: BLE001
            raise MasbenchError(f"model {shown(name)}: {label}(num_classes={dataset.num_classes}, input_shape="
                                f"{shape}) failed ({type(error).__name__}: {error})") from error
        if not isinstance(model, nn.Module):
            raise MasbenchError(f"model {shown(name)}: {label} returned {shown(model)}, not a torch.nn.Module")
        return model

    return ModelEntry(IMAGE_AND_TABULAR, f"{label}(num_classes, input_shape)", build, source)


def _torchvision(name: str):
    import torchvision

    arch = name.removeprefix(TV)
    if arch not in classifiers():
        hint = did_you_mean(name, [TV + known for known in classifiers()])
        raise MasbenchError(f"Unknown torchvision model {shown(name)} ({hint}valid: tv:NAME for one of torchvision's "
                            f"{len(classifiers())} classifiers, e.g. tv:resnet50; see masbench list models)")
    build = functools.partial(_build_torchvision, arch)
    return ModelEntry(("image",), f"torchvision.models.{arch}", build, f"torchvision {torchvision.__version__}",
                      functools.partial(weights_name, name))


@functools.cache
def classifiers() -> list[str]:
    from torchvision import models

    return models.list_models(module=models)  # the classification models (not detection, segmentation, video)


def weights_name(name: str, pretrained: str) -> str:
    """The weights ``pretrained`` names for ``tv:ARCH``, resolved (``DEFAULT`` is a version's choice)."""
    from torchvision import models

    weights = models.get_model_weights(name.removeprefix(TV))
    if pretrained not in weights.__members__:
        raise MasbenchError(f"Invalid pretrained {shown(pretrained)} for model {shown(name)} (valid: "
                            f"{', '.join(weights.__members__)})")
    return weights[pretrained].name


def _build_torchvision(arch: str, dataset, pretrained: str | None) -> nn.Module:
    from torchvision import models

    channels = dataset.input_shape[0] if len(dataset.input_shape) == 3 else None
    if channels != 3:
        raise MasbenchError(f"model 'tv:{arch}' takes 3-channel images (C, H, W); dataset {shown(dataset.name)} "
                            f"has input shape {tuple(dataset.input_shape)}")
    if pretrained is None:
        return models.get_model(arch, weights=None, num_classes=dataset.num_classes)
    weights = models.get_model_weights(arch)[pretrained]
    try:
        model = models.get_model(arch, weights=weights)
    except OSError as error:  # urllib's URLError is an OSError: no network, or the server refused
        raise MasbenchError(f"cannot download torchvision's weights {weights} ({weights.url}): {error}; run once "
                            f"with internet access, or put the file in $TORCH_HOME/hub/checkpoints") from None
    return _new_head(model, dataset.num_classes)


def _new_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Replace the last linear layer (the classifier's) with a fresh one for ``num_classes``."""
    last = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not last:
        raise MasbenchError(f"{type(model).__name__} has no linear layer to give the data set's classes")
    path, layer = last[-1]
    parent = model.get_submodule(path.rpartition(".")[0]) if "." in path else model
    setattr(parent, path.rpartition(".")[2], nn.Linear(layer.in_features, num_classes, bias=layer.bias is not None))
    return model


def check_outputs(model: nn.Module, dataset, name: str) -> None:
    """One forward pass of two zero inputs: the model must give a (2, num_classes) tensor of logits.

    Outputs of another width train without complaint (cross-entropy takes 13 logits for 10 classes) into
    numbers that mean nothing, and a model that cannot take the data's shape would fail only once its run is
    stored. Evaluation mode, no gradient, and the RNGs restored: the run's initial weights and streams are
    those it would have had without the check.
    """
    import torch

    shape = (2, *(int(n) for n in dataset.input_shape))
    training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            out = model(torch.zeros(shape))
    # The user's model: whatever it raises is its fault, said in one line (MASBENCH_DEBUG=1 shows it whole).
    except Exception as error:  # noqa: BLE001
        raise MasbenchError(f"model {shown(name)} cannot take {dataset.name}'s inputs: a forward pass of shape "
                            f"{shape} failed ({type(error).__name__}: {str(error)[:200]})") from error
    finally:
        model.train(training)
    expected = (2, dataset.num_classes)
    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if got != expected:
        raise MasbenchError(f"model {shown(name)} gives outputs of shape {got} for inputs of shape {shape}: "
                            f"expected {expected}, one logit for each of {dataset.name}'s {dataset.num_classes} "
                            f"classes")
