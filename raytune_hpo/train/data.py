"""Datasets as in-memory uint8 tensors, k-fold / hold-out splits, and batches gathered and
augmented on the trial's device (no DataLoader worker processes).

Digits (scikit-learn, shipped offline) is the default; CIFAR-10, MNIST and FashionMNIST come
through torchvision (downloaded only when the sweep allows it); ImageFolder reads a directory
tree; ``synthetic`` makes class-dependent patterns from a seed.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from raytune_hpo.sweep.sections import DATASETS, TORCHVISION, DataSettings, dataset_problem


@dataclass(frozen=True)
class ImageData:
    """``images``: uint8 (N, C, H, W); ``labels``: int64 (N,); per-channel mean/std in [0, 1]."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def to(self, device: torch.device | str) -> ImageData:
        return ImageData(
            self.name,
            self.images.to(device),
            self.labels.to(device),
            self.num_classes,
            self.mean,
            self.std,
        )


def _from_uint8(name: str, images: np.ndarray, labels: np.ndarray) -> ImageData:
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))
    if x.ndim == 3:
        x = x.unsqueeze(1)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    flat = x.float().div_(255.0).transpose(0, 1).reshape(x.shape[1], -1)
    mean = tuple(float(v) for v in flat.mean(1))
    std = tuple(max(float(v), 1e-3) for v in flat.std(1))
    return ImageData(name, x, y, int(y.max()) + 1, mean, std)


def _digits() -> ImageData:
    from sklearn.datasets import load_digits

    d = load_digits()  # 1,797 8x8 images with values 0..16, shipped inside scikit-learn
    images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)
    return _from_uint8("digits", images, d.target)


def _synthetic(n: int, num_classes: int, channels: int, size: int, seed: int) -> ImageData:
    """Class templates plus noise: learnable, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(0, 255, size=(num_classes, channels, size, size))
    labels = rng.integers(0, num_classes, size=n)
    noise = rng.normal(0, 60, size=(n, channels, size, size))
    images = np.clip(templates[labels] + noise, 0, 255).astype(np.uint8)
    return _from_uint8("synthetic", images, labels)


def _torchvision(name: str, root: str, download: bool) -> ImageData:
    import torchvision

    cls_name, _ = TORCHVISION[name]
    try:
        ds = getattr(torchvision.datasets, cls_name)(root, train=True, download=download)
    except RuntimeError as e:
        raise FileNotFoundError(f"{name}: {e} (root={root!r}, download={download})") from e
    images = np.asarray(ds.data)
    if images.ndim == 4:  # CIFAR: N, H, W, C
        images = images.transpose(0, 3, 1, 2)
    return _from_uint8(name, images, np.asarray(ds.targets))


def _imagefolder(root: str, image_size: int) -> ImageData:
    import torchvision
    from torchvision.transforms import v2

    tf = v2.Compose([v2.PILToTensor(), v2.Resize((image_size, image_size), antialias=True)])
    ds = torchvision.datasets.ImageFolder(os.path.expanduser(root), transform=tf)
    if len(ds) == 0:
        raise FileNotFoundError(f"imagefolder: no images under {root!r}")
    images = np.stack([ds[i][0].numpy() for i in range(len(ds))])
    return _from_uint8("imagefolder", images, np.asarray(ds.targets))


@functools.lru_cache(maxsize=4)
def load_dataset(name: str = "digits", *, seed: int = 0, **options) -> ImageData:
    """Load once per process (actors are reused across trials), on the CPU. ``options``: the
    sweep file's ``trainable.data`` (``DataSettings``)."""
    d = DataSettings(**options)
    problem = dataset_problem(name, d.root, d.download)
    if problem:
        raise (ValueError if name not in DATASETS else FileNotFoundError)(problem)
    if name == "digits":
        data = _digits()
    elif name == "synthetic":
        data = _synthetic(d.n_samples, d.num_classes, d.channels, d.image_size or 16, seed)
    elif name == "imagefolder":
        data = _imagefolder(d.root or "", d.image_size or 64)
    else:
        data = _torchvision(name, os.path.expanduser(d.root or "~/.raytune-hpo/data"), d.download)
    size = d.image_size
    if size and name in ("digits",) + tuple(TORCHVISION) and data.shape[1] != size:
        resized = F.interpolate(data.images.float(), size=(size, size), mode="bilinear")
        data = ImageData(
            data.name,
            resized.round().clamp(0, 255).to(torch.uint8),
            data.labels,
            data.num_classes,
            data.mean,
            data.std,
        )
    return data


def make_splits(
    labels: np.ndarray, *, k_folds: int, val_fraction: float, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold splits (k >= 2) or one stratified hold-out split (k <= 1)."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    idx = np.arange(len(labels))
    if k_folds >= 2:
        skf = StratifiedKFold(n_splits=k_folds, shuffle=True, random_state=seed)
        return [(tr, va) for tr, va in skf.split(idx, labels)]
    tr, va = train_test_split(idx, test_size=val_fraction, stratify=labels, random_state=seed)
    return [(np.sort(tr), np.sort(va))]


def augment(x: torch.Tensor, gen: torch.Generator, *, pad: int, flip: bool) -> torch.Tensor:
    """Random crop with reflection padding and random horizontal flip, per sample, on x's
    device. ``x``: float (B, C, H, W)."""
    b, c, h, w = x.shape
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        oy = torch.randint(0, 2 * pad + 1, (b,), device=x.device, generator=gen)
        ox = torch.randint(0, 2 * pad + 1, (b,), device=x.device, generator=gen)
        rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        bi = torch.arange(b, device=x.device)[:, None, None, None]
        ci = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[bi, ci, rows, cols]
    if flip:
        mask = torch.rand(b, device=x.device, generator=gen) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


# Largest float32 copy of a dataset that ``normalised`` keeps on the device (bytes).
NORMALISED_MAX_BYTES = 2 * 1024**3


def normalised(data: ImageData) -> torch.Tensor | None:
    """All of ``data``'s images as normalised float32 on their device, computed once, so that
    a batch is one gather instead of a gather, a cast and two arithmetic kernels; None when
    that copy would exceed ``NORMALISED_MAX_BYTES`` (batches then normalise one by one).
    The values are those ``batches`` computes per batch: cropping, padding and flipping
    commute with the per-channel normalisation."""
    if 4 * data.images.numel() > NORMALISED_MAX_BYTES:
        return None
    return _normalise(data.images, data)


def _normalise(images: torch.Tensor, data: ImageData) -> torch.Tensor:
    mean = torch.tensor(data.mean, device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(data.std, device=images.device).view(1, -1, 1, 1)
    return (images.float().div_(255.0) - mean) / std


def batches(
    data: ImageData,
    index: torch.Tensor,
    *,
    batch_size: int,
    gen: torch.Generator | None = None,
    augmentation: bool = False,
    images: torch.Tensor | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Normalised float batches from ``data`` (already on the device). With ``gen`` the order
    is shuffled and, with ``augmentation``, each batch is cropped and flipped. ``images``:
    the output of ``normalised(data)``, to gather batches from instead of normalising each."""
    device = data.images.device
    if gen is not None:
        index = index[torch.randperm(len(index), device=device, generator=gen)]
    pad = max(1, data.shape[1] // 8)
    for start in range(0, len(index), batch_size):
        ib = index[start : start + batch_size]
        x = images[ib] if images is not None else _normalise(data.images[ib], data)
        if augmentation and gen is not None:
            x = augment(x, gen, pad=pad, flip=True)
        yield x, data.labels[ib]
