"""Training schedules: config validation, 1-epoch smoke run of each method, checkpoints, slow recipe."""


import pytest
import torch

from apotflow.sw.data import load_digits_split
from apotflow.sw.models import DigitsNet
from apotflow.sw.prune import slice_pruned
from apotflow.sw.train import METHODS, TrainConfig, load_checkpoint, save_checkpoint, train, train_digits


@pytest.fixture(scope="module")
def data():
    return load_digits_split(seed=0)


def test_split_shapes(data):
    assert data.x_train.shape[1:] == (1, 8, 8) and len(data.x_test) >= 100
    assert data.x_train.max() == 16 and torch.equal(data.x_train, data.x_train.round())
    assert set(data.y_test.tolist()) == set(range(10))


@pytest.mark.parametrize(
    "bad",
    [
        {"method": "nope"},
        {"w_bits": 6},
        {"prune_rate": 1.0},
        {"epochs": 0},
        {"lr": 0.0},
        {"batch_size": -1},
        {"wd": -1.0},
    ],
)
def test_config_validation(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


def test_config_dict():
    d = TrainConfig().to_dict()
    assert d["version"] == 1 and d["method"] == "ppq" and d["prune_rate"] == 0.3


@pytest.mark.parametrize("method", METHODS)
def test_smoke_each_method(method, data):
    torch.manual_seed(0)
    cfg = TrainConfig(method=method, epochs=1, stage_epochs=1, qat_epochs=1, train_subset=256)
    seen = []
    info = train(DigitsNet(), data, cfg, progress=seen.append)
    model = info["model"]
    assert seen and 0.0 <= info["quant_acc"] <= 1.0 and 0.0 <= info["float_acc"] <= 1.0
    assert not model.training and model.quantize == (method in ("apot", "spq", "ppq"))
    pruned = method in ("fpgm", "spq", "ppq")
    assert info["sparsity"]["kept"] == ([12, 12, 23] if pruned else [16, 16, 32])
    if pruned:
        for group in model.prune_groups():
            for conv, bn in group:
                drop = ~conv.filter_mask
                assert (conv.weight[drop] == 0).all() and (bn.weight[drop] == 0).all()


def test_checkpoint_roundtrip(tmp_path, data):
    torch.manual_seed(0)
    cfg = TrainConfig(method="ppq", epochs=1, stage_epochs=1, qat_epochs=1, train_subset=128)
    model = train(DigitsNet(), data, cfg)["model"]
    for m in (model, slice_pruned(model)):
        path = save_checkpoint(m, tmp_path / "ck.pt", {"acc": 0.5})
        m2, meta = load_checkpoint(path)
        assert meta == {"acc": 0.5} and m2.widths == m.widths and m2.quantize
        with torch.no_grad():
            assert torch.equal(m(data.x_test), m2(data.x_test))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind


@pytest.mark.slow
def test_train_digits_recipe():
    _, info = train_digits(seed=0)  # its time is a benchmark figure (make demo's report), not a test
    assert info["quant_acc"] >= 0.96, info["quant_acc"]


def test_deterministic(data):
    cfg = TrainConfig(method="spq", epochs=1, train_subset=128)
    states = []
    for _ in range(2):
        torch.manual_seed(0)
        states.append(train(DigitsNet(), data, cfg)["model"].state_dict())
    a, b = states
    assert all(torch.equal(a[k], b[k]) for k in a)
