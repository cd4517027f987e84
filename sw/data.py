"""The scikit-learn 8x8 digits set (1,797 images, bundled: no download), as integer pixels."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Split:
    """Pixels are integers 0..16 stored as float32 (N, 1, 8, 8); labels int64 (N,)."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


def load_digits_split(seed: int = 0, test_size: float = 0.25) -> Split:
    """Stratified, seeded train/test split; the test split has >= 100 images."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    ds = load_digits()
    x, y = ds.images.astype("float32"), ds.target.astype("int64")
    if x.min() < 0 or x.max() > 16 or (x != x.round()).any():
        raise ValueError("digits pixels are expected to be integers in 0..16")
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    if len(xte) < 100:
        raise ValueError(f"test split must hold >= 100 images, got {len(xte)} (test_size={test_size})")

    def t(a):
        return torch.from_numpy(a)

    return Split(t(xtr).unsqueeze(1), t(ytr), t(xte).unsqueeze(1), t(yte))


def random_subsets(split, calib: int, images: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Seeded random draws of ``calib`` training images (post-training calibration) and ``images`` test images
    (0: the whole test set, in order) with their labels. Random, not the first N: the CIFAR-10 JPEG copy is
    ordered by class, so its first 512 training images are all airplanes."""
    g = torch.Generator().manual_seed(seed)
    cal = split.x_train[torch.randperm(len(split.x_train), generator=g)[:calib]]
    te = torch.randperm(len(split.x_test), generator=g)[:images] if images else slice(None)
    return cal, split.x_test[te], split.y_test[te]
