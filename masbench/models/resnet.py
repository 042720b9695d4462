"""torchvision ResNets adapted to 32x32 inputs: a 3x3 stride-1 stem and no max-pool."""

from __future__ import annotations

from torch import nn


def cifar_resnet(depth: int, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    import torchvision

    builder = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34}[depth]
    model = builder(num_classes=num_classes)
    model.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model
