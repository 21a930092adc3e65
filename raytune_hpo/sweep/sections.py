"""The sweep file's ``trainable:`` section, typed, validated when the file is read: the built-in
CNN's settings (``CNNSettings``: types, allowed values and defaults written once here; the space
check, ``train_cnn``'s defaults and the README's sweep-file reference come from it) or a user's
own code (``UserSection``: ``function``, ``config``, ``metrics``, ``settings``). Pure data: no
torch, and user code is not imported here (``raytune_hpo.sweep.load`` does that when a run is
assembled)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from raytune_hpo.sweep.fields import Strict, parse_fields

MODEL_NAMES = ("tinyvgg", "lenet5", "resnet", "mlp")
DATASETS = ("digits", "synthetic", "cifar10", "mnist", "fashion_mnist", "imagefolder")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
TORCHVISION = {
    # name -> (torchvision class name, folder torchvision expects under root)
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
    "mnist": ("MNIST", "MNIST/raw"),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw"),
}
# Every result's metrics: the epoch's, and the model's size (millions of parameters) and its
# inference time (ms per image on the trial's device), measured once per trial (train/measure.py).
BASE_METRICS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "params_m",
    "latency_ms",
)
KFOLD_METRICS = ("val_accuracy_std", "val_loss_std")


class _Settings(BaseModel):
    # strict: a string is no float, a float no int, an int no list (checked before Ray starts)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DataSettings(_Settings):
    root: str | None = None
    download: bool = False
    image_size: int | None = Field(default=None, ge=4, le=1024)
    n_samples: int = Field(default=1000, ge=10)  # synthetic
    num_classes: int = Field(default=5, ge=2)  # synthetic
    channels: int = Field(default=3, ge=1, le=4)  # synthetic


class CNNSettings(_Settings):
    """Every setting of ``train_cnn``; any of them may be searched in ``space``. ``None``:
    the model's own default (``raytune_hpo.train.models``)."""

    model: Literal[MODEL_NAMES] = "tinyvgg"  # type: ignore[valid-type]
    dataset: Literal[DATASETS] = "digits"  # type: ignore[valid-type]
    data: DataSettings = DataSettings()
    epochs: int = Field(default=10, ge=1)
    k_folds: int = Field(default=1, ge=1, le=50)
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    augment: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    lr: float = Field(default=1e-3, gt=0)
    batch_size: int = Field(default=32, ge=1)
    optimizer: Literal[OPTIMIZERS] = "adam"  # type: ignore[valid-type]
    momentum: float = Field(default=0.9, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    dropout: float = Field(default=0.3, ge=0, lt=1)
    dropblock: float | None = Field(default=None, ge=0, lt=1)
    dropblock_size: int | None = Field(default=None, ge=1)
    hidden: list[int] | None = None  # tinyvgg: 3 widths; mlp: any number
    c1: int | None = Field(default=None, ge=1)
    c3: int | None = Field(default=None, ge=1)
    c5: int | None = Field(default=None, ge=1)
    f6: int | None = Field(default=None, ge=1)
    width: int | None = Field(default=None, ge=1)
    blocks: int | None = Field(default=None, ge=1)
    # Speed (train/perf.py says what "auto" picks and why); GPU-only choices are ignored on a
    # CPU with a one-line notice.
    amp: Literal["auto", "bf16", "off"] = "auto"
    channels_last: bool | Literal["auto"] = "auto"
    compile: bool = False
    cuda_graphs: bool | Literal["auto"] = "auto"
    # Fused trials (train/fused_tune.py): up to `fused` trials on one device train as one
    # vmapped model; fixed settings, not searched.
    fused: int = Field(default=1, ge=1)
    fused_wait_s: float = Field(default=10.0, gt=0)
    fused_lookahead: int = Field(default=1, ge=0, le=1)

    def fixed_config(self) -> dict[str, Any]:
        """What every trial's ``config`` holds before the space overrides it."""
        cfg = self.model_dump(exclude_none=True, exclude={"data"})
        cfg["data"] = self.data.model_dump(exclude_defaults=True)
        return cfg


# Settings a sweep fixes but does not search, and what members of one fused group may differ in.
NOT_SEARCHED = ("fused", "fused_wait_s", "fused_lookahead", "device")
FUSED_MAY_DIFFER = ("lr", "weight_decay", "momentum", "dropout", "dropblock", "epochs", "seed")
# Settings that may change mid-run: a trial continued from another trial's checkpoint under a
# new config (population-based training) trains on with these taken from its config (the
# optimizer's rates, the model's dropout and DropBlock rates; weights and buffers from the
# checkpoint). Everything else (the model's shape, batch size, epochs, dataset, optimizer,
# k_folds, seed) must stay as the checkpoint was made.
MUTABLE = ("lr", "momentum", "weight_decay", "dropout", "dropblock")


# A user's own trainable: the types its ``settings:`` may declare.
TYPES: dict[str, Any] = {
    "float": float,
    "int": int,
    "bool": bool,
    "str": str,
    "list": list,
    "dict": dict,
    "any": Any,
}


class UserSection(Strict):
    """``function: FILE.py:NAME`` (or ``package.module:NAME``), its fixed ``config``, the
    ``metrics`` it reports and the types of its config keys (``settings``), all optional but
    the function, which a sweep run from Python may give as an object instead."""

    function: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    metrics: list[str] | None = Field(default=None, min_length=1)
    settings: dict[str, Literal[tuple(TYPES)]] | None = None  # type: ignore[valid-type]

    def fixed_config(self) -> dict[str, Any]:
        return dict(self.config)


TrainableSection = CNNSettings | UserSection


def is_user_section(section: dict[str, Any]) -> bool:
    """A section naming user code, or holding what only a user's trainable takes."""
    return bool(set(section) & {"function", "config", "metrics", "settings"})


def parse_section(section: dict[str, Any]) -> TrainableSection:
    """The ``trainable:`` section as typed data; a one-line error naming its field."""
    model = UserSection if is_user_section(section) else CNNSettings
    return parse_fields(model, section, prefix="trainable")


@cache
def defaults() -> dict[str, Any]:
    """``train_cnn``'s config defaults (the model's own where a setting is None)."""
    return CNNSettings().model_dump(exclude_none=True)


def dataset_problem(name: str, root: str | None, download: bool) -> str | None:
    """Why ``name`` cannot be loaded here (None when it can); checked before any trial starts."""
    if name not in DATASETS:
        return f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}"
    if name == "imagefolder":
        if not root:
            return "imagefolder needs `root`: a directory with one sub-directory per class"
        if not Path(root).expanduser().is_dir():
            return f"directory {root!r} does not exist (imagefolder: one sub-directory per class)"
    if name in TORCHVISION and not download:
        expected = Path(root or "").expanduser() / TORCHVISION[name][1]
        if not root or not expected.exists():
            return (
                f"{name} files not found at {str(expected)!r}; set `download: true` to fetch "
                f"them, or put the torchvision files under `root`"
            )
    return None


__all__ = [
    "BASE_METRICS",
    "DATASETS",
    "FUSED_MAY_DIFFER",
    "KFOLD_METRICS",
    "MODEL_NAMES",
    "MUTABLE",
    "NOT_SEARCHED",
    "OPTIMIZERS",
    "TORCHVISION",
    "TYPES",
    "CNNSettings",
    "DataSettings",
    "TrainableSection",
    "UserSection",
    "dataset_problem",
    "defaults",
    "is_user_section",
    "parse_section",
]
