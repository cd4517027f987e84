"""CIFAR-10 loader: both published forms (fake ones written here), the npz cache, one-line errors."""

import io
import pickle
import tarfile

import numpy as np
import pytest

from apotflow.sw.cifar import CifarError, load_cifar10


def _batches_folder(root, n=4):
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(range(n))}
        (root / name).write_bytes(pickle.dumps(d))
    return root


def _jpeg_tar(path, n=2):
    from PIL import Image

    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with tarfile.open(path, "w:xz") as tf:
        for split in ("train", "test"):
            for ci, c in enumerate(classes):
                for k in range(n):
                    buf = io.BytesIO()
                    Image.new("RGB", (32, 32), (ci * 20, k * 50, 7)).save(buf, "PNG")  # lossless for the check
                    info = tarfile.TarInfo(f"cifar/{split}/{c}/{k:04d}.png")
                    info.size = len(buf.getvalue())
                    tf.addfile(info, io.BytesIO(buf.getvalue()))
    return path


def test_batches_py_and_cache(tmp_path):
    root = _batches_folder(tmp_path / "cifar-10-batches-py")
    d = load_cifar10(root, cache=tmp_path / "cache")
    assert d.name == "cifar10" and d.x_train.shape == (20, 3, 32, 32) and d.x_test.shape == (4, 3, 32, 32)
    assert str(d.x_train.dtype) == "torch.uint8" and d.y_train.tolist()[:4] == [0, 1, 2, 3]
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    d2 = load_cifar10(root, cache=tmp_path / "cache")  # from the cache
    assert (d2.x_train == d.x_train).all()


def test_jpeg_tarball(tmp_path):
    d = load_cifar10(_jpeg_tar(tmp_path / "c.tar.xz"), cache=None)
    assert d.name == "cifar10-jpeg" and d.x_train.shape == (20, 3, 32, 32)
    assert d.y_train.tolist() == [c for c in range(10) for _ in range(2)]
    assert int(d.x_train[4, 0, 0, 0]) == 40 and int(d.x_train[5, 1, 0, 0]) == 50  # class 2, image 1


@pytest.mark.parametrize("case", ["missing", "not_tar", "bad_batch", "wrong_kind"])
def test_one_line_errors(tmp_path, case):
    if case == "missing":
        p, ds = tmp_path / "nope.tar.xz", None
    elif case == "not_tar":
        p, ds = tmp_path / "x.tar.xz", None
        p.write_bytes(b"not an archive")
    elif case == "bad_batch":
        p, ds = _batches_folder(tmp_path / "b"), None
        (p / "data_batch_3").write_bytes(b"\x80\x04garbage")
    else:
        p, ds = tmp_path, "cifar10-jpeg"
    with pytest.raises(CifarError) as e:
        load_cifar10(p, ds, cache=None)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


def tiny_cpu_ppq(model: str, tmp_path) -> tuple[dict, object]:
    """`apotflow train --model MODEL --method ppq` on a tiny fake CIFAR folder (CPU, eager, one epoch a
    phase): the run's result.json and its --out folder."""
    import json

    from apotflow.sim.cli import main

    data = _batches_folder(tmp_path / "cifar-10-batches-py", n=8)
    out = tmp_path / "ppq"
    assert main(["train", "--model", model, "--method", "ppq", "--epochs", "1", "--stage-epochs", "1",
                 "--qat-epochs", "1", "--data", str(data), "--cache", str(tmp_path / "cache"), "--batch-size", "8",
                 "--step-mode", "eager", "--no-bf16", "--no-channels-last", "--out", str(out)]) == 0
    return json.loads((out / "result.json").read_text()), out
