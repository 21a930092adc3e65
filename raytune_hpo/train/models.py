"""The design papers' networks: TinyVGG (BN, dropout, DropBlock), LeNet5 with tunable widths,
a small ResNet and an MLP. Each takes the input shape (C, H, W) and the number of classes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torchvision.ops import DropBlock2d


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, ceil_mode=True),
    )


class TinyVGG(nn.Module):
    """Three conv blocks (12/24/24 channels) with batch norm after each conv, DropBlock between
    the first blocks and dropout before the classifier, as in the TinyVGG grid vs random search
    study (its section 2.2)."""

    def __init__(
        self,
        *,
        in_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (12, 24, 24),
        dropout: float = 0.3,
        dropblock: float = 0.1,
        dropblock_size: int = 3,
    ) -> None:
        super().__init__()
        c, h, w = in_shape
        h1, h2, h3 = hidden
        self.features = nn.Sequential(
            _block(c, h1),
            DropBlock2d(p=dropblock, block_size=min(dropblock_size, max(1, (h + 1) // 2))),
            _block(h1, h2),
            _block(h2, h3),
        )
        with torch.no_grad():
            n_flat = self.features(torch.zeros(1, c, h, w)).numel()
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(n_flat, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al., 1998) with tunable widths C1, C3, C5 and F6, as in the PSO/BOHB
    framework paper (its section 3). C1 and C3 are 5x5 convolutions (padded so small images
    fit), each followed by 2x2 max pooling; C5 spans the remaining feature map."""

    def __init__(
        self,
        *,
        in_shape: Sequence[int],
        num_classes: int,
        c1: int = 6,
        c3: int = 16,
        c5: int = 120,
        f6: int = 84,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        c, h, w = in_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, c1, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(c1, c3, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
        )
        with torch.no_grad():
            _, _, fh, fw = self.features(torch.zeros(1, c, h, w)).shape
        self.c5 = nn.Sequential(nn.Conv2d(c3, c5, (fh, fw)), nn.ReLU(inplace=True), nn.Flatten())
        self.head = nn.Sequential(
            nn.Linear(c5, f6),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(f6, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.c5(self.features(x)))


class _Residual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class ResNet(nn.Module):
    """A small CIFAR-style ResNet (He et al., 2016): three stages of ``blocks`` residual blocks
    with ``width``, 2x``width``, 4x``width`` channels."""

    def __init__(
        self,
        *,
        in_shape: Sequence[int],
        num_classes: int,
        width: int = 16,
        blocks: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        c = in_shape[0]
        layers: list[nn.Module] = [
            nn.Conv2d(c, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        c_in = width
        for stage, mult in enumerate((1, 2, 4)):
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(_Residual(c_in, width * mult, stride))
                c_in = width * mult
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c_in, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MLP(nn.Module):
    """Fully connected network over the flattened image."""

    def __init__(
        self,
        *,
        in_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        n_in = int(torch.tensor(in_shape).prod())
        layers: list[nn.Module] = [nn.Flatten()]
        for width in hidden:
            layers += [nn.Linear(n_in, width), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            n_in = width
        layers.append(nn.Linear(n_in, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


MODELS: dict[str, type[nn.Module]] = {
    "tinyvgg": TinyVGG,
    "lenet5": LeNet5,
    "resnet": ResNet,
    "mlp": MLP,
}

# Config keys each model reads (besides the shape and class count), for the trainable.
MODEL_OPTIONS: dict[str, tuple[str, ...]] = {
    "tinyvgg": ("hidden", "dropout", "dropblock", "dropblock_size"),
    "lenet5": ("c1", "c3", "c5", "f6", "dropout"),
    "resnet": ("width", "blocks", "dropout"),
    "mlp": ("hidden", "dropout"),
}


def build_model(
    name: str, *, in_shape: Sequence[int], num_classes: int, options: dict[str, Any]
) -> nn.Module:
    """The named model with the options it takes from ``options`` (other keys ignored)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(MODELS)}")
    kw = {k: options[k] for k in MODEL_OPTIONS[name] if k in options}
    if "hidden" in kw:
        kw["hidden"] = tuple(int(v) for v in kw["hidden"])
    return MODELS[name](in_shape=in_shape, num_classes=num_classes, **kw)
