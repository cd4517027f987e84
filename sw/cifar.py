"""CIFAR-10 as uint8 tensors (N, 3, 32, 32) + int64 labels, from either published form.

* ``cifar10``: the standard ``cifar-10-batches-py`` folder (pickled ``data_batch_1..5``, ``test_batch``).
* ``cifar10-jpeg``: the JPEG tarball (``.tar``/``.tar.xz``/``.tar.gz``) in ImageFolder layout
  ``[prefix/]train/<class>/NNNN.jpg`` and ``[prefix/]test/<class>/NNNN.jpg``; classes sorted
  alphabetically (= the CIFAR-10 label order). Decoded once with Pillow, in file-name order.

Either is decoded once and cached as ``<cache>/<name>-<key>.npz`` (uint8, no pickles); the key hashes
the source's path, size and mtime, so a changed source is decoded again. Any problem with the source is
a ``CifarError`` whose message is one line naming the path.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .atomic import remove_stale, write_atomic

DATASETS = ("cifar10", "cifar10-jpeg")
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DEFAULT_CACHE = Path(os.environ.get("APOTFLOW_CACHE", Path.home() / ".cache" / "apotflow"))


class CifarError(ValueError):
    """A missing or malformed CIFAR-10 source (one-line message)."""


@dataclass(frozen=True)
class CifarSplit:
    """Pixels uint8 (N, 3, 32, 32), labels int64 (N,)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    name: str
    source: str


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except FileNotFoundError:
        raise CifarError(f"{path}: missing CIFAR-10 batch file") from None
    except Exception as e:  # truncated / not a pickle
        raise CifarError(f"{path}: not a CIFAR-10 batch ({type(e).__name__})") from None


def _batches(root: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for n in names:
        d = _unpickle(root / n)
        data, labels = d.get(b"data"), d.get(b"labels", d.get(b"fine_labels"))
        if data is None or labels is None or np.asarray(data).ndim != 2 or np.asarray(data).shape[1] != 3072:
            raise CifarError(f"{root / n}: malformed CIFAR-10 batch (need 'data' N x 3072 and 'labels')")
        if len(labels) != len(data):
            raise CifarError(f"{root / n}: {len(data)} images but {len(labels)} labels")
        xs.append(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(labels, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def decode_batches_py(root: Path) -> dict[str, np.ndarray]:
    """The pickled ``cifar-10-batches-py`` folder -> arrays."""
    if not root.is_dir():
        raise CifarError(f"{root}: not a cifar-10-batches-py folder")
    xtr, ytr = _batches(root, [f"data_batch_{i}" for i in range(1, 6)])
    xte, yte = _batches(root, ["test_batch"])
    return {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte}


def decode_jpeg_tar(path: Path) -> dict[str, np.ndarray]:
    """The ImageFolder tarball -> arrays (images sorted by split, class, file name)."""
    from PIL import Image

    try:
        tf = tarfile.open(path, "r:*")
    except FileNotFoundError:
        raise CifarError(f"{path}: no such file") from None
    except (tarfile.TarError, OSError, EOFError) as e:
        raise CifarError(f"{path}: not a readable tar archive ({type(e).__name__})") from None
    found: dict[str, dict[str, list[tuple[str, bytes]]]] = {"train": {}, "test": {}}
    try:
        with tf:
            for m in tf:
                if not m.isfile() or not m.name.lower().endswith((".jpg", ".jpeg", ".png")):
                    continue
                parts = Path(m.name).parts
                if len(parts) < 3 or parts[-3] not in found:
                    continue
                found[parts[-3]].setdefault(parts[-2], []).append((parts[-1], tf.extractfile(m).read()))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise CifarError(f"{path}: truncated or damaged archive ({type(e).__name__})") from None
    out = {}
    for split, by_class in found.items():
        classes = sorted(by_class)
        if len(classes) != 10:
            raise CifarError(f"{path}: expected 10 class folders under {split}/, found {len(classes)}")
        xs, ys = [], []
        for label, c in enumerate(classes):
            for name, blob in sorted(by_class[c]):
                try:
                    img = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"), dtype=np.uint8)
                except Exception as e:
                    raise CifarError(f"{path}: cannot decode {split}/{c}/{name} ({type(e).__name__})") from None
                if img.shape != (32, 32, 3):
                    raise CifarError(f"{path}: {split}/{c}/{name} is {img.shape[1]}x{img.shape[0]}, not 32x32")
                xs.append(img.transpose(2, 0, 1))
                ys.append(label)
        out[f"x_{split}"] = np.stack(xs)
        out[f"y_{split}"] = np.asarray(ys, dtype=np.int64)
    return out


def _cache_key(path: Path) -> str:
    st = path.stat()
    h = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    if path.is_dir():
        for f in sorted(path.iterdir()):
            h.update(f"{f.name}|{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


def guess_dataset(path: str | os.PathLike) -> str:
    p = Path(path)
    return "cifar10" if p.is_dir() else "cifar10-jpeg"


def load_cifar10(path: str | os.PathLike, dataset: str | None = None,
                 cache: str | os.PathLike | None = DEFAULT_CACHE) -> CifarSplit:
    """Load (decoding once, then from the .npz cache; cache=None disables caching)."""
    path = Path(path)
    dataset = dataset or guess_dataset(path)
    if dataset not in DATASETS:
        raise CifarError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    if not path.exists():
        raise CifarError(f"{path}: no such file or folder (dataset {dataset})")
    if dataset == "cifar10" and not path.is_dir():
        raise CifarError(f"{path}: dataset cifar10 needs the cifar-10-batches-py folder")
    if dataset == "cifar10-jpeg" and path.is_dir():
        raise CifarError(f"{path}: dataset cifar10-jpeg needs the .tar.xz file, not a folder")
    npz = Path(cache) / f"{dataset}-{_cache_key(path)}.npz" if cache is not None else None
    arrays = None
    if npz is not None and npz.exists():
        try:
            with np.load(npz) as z:
                arrays = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        except Exception:
            arrays = None  # a damaged cache is rebuilt
    if arrays is None:
        arrays = decode_batches_py(path) if dataset == "cifar10" else decode_jpeg_tar(path)
        if npz is not None:
            remove_stale(npz.parent)  # a killed decode's half-written cache
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            write_atomic(npz, buf.getbuffer())
    for s in ("train", "test"):
        x, y = arrays[f"x_{s}"], arrays[f"y_{s}"]
        if x.dtype != np.uint8 or x.shape[1:] != (3, 32, 32) or len(x) != len(y) or len(x) == 0:
            raise CifarError(f"{path}: malformed {s} split {x.shape}/{y.shape}")
        if y.min() < 0 or y.max() > 9:
            raise CifarError(f"{path}: labels outside 0..9 in the {s} split")
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    return CifarSplit(t["x_train"], t["y_train"], t["x_test"], t["y_test"], dataset, str(path))
