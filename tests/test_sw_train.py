"""The digits net on the one trainer (sw/fasttrain.py, eager on the CPU): config validation, a 1-epoch smoke
run of each method, checkpoints, determinism (threads, resume), the slow recipe."""


import pytest
import torch

from apotflow.sw.checkpoint import load_checkpoint, save_checkpoint
from apotflow.sw.data import load_digits_split
from apotflow.sw.fasttrain import METHODS, DigitsConfig, train_fast
from apotflow.sw.models import DigitsNet
from apotflow.sw.prune import slice_pruned

SMOKE = {"epochs": 1, "stage_epochs": 1, "qat_epochs": 1}


@pytest.fixture(scope="module")
def data():
    return load_digits_split(seed=0)


def _train(data, cfg: DigitsConfig, ckpt=None, **kw) -> tuple[DigitsNet, dict]:
    torch.manual_seed(cfg.seed)
    model = DigitsNet(w_bits=cfg.w_bits, a_bits=cfg.a_bits)
    return model, train_fast(model, data, cfg, ckpt, log=lambda *a: None, save_float=False, **kw)


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
        {"cutout": 4},  # no augmentation for digits
    ],
)
def test_config_validation(bad):
    with pytest.raises(ValueError):
        DigitsConfig(**bad)


def test_config_dict():
    d = DigitsConfig().to_dict()
    assert d["version"] == 1 and d["method"] == "ppq" and d["prune_rate"] == 0.3
    assert (d["epochs"], d["stage_epochs"], d["qat_epochs"], d["batch_size"]) == (30, 5, 20, 64)
    assert d["qat_lr"] == pytest.approx(0.01) and d["augment"] is False and d["eval_every"] == 1
    assert DigitsConfig(lr=0.2).qat_lr == pytest.approx(0.02)  # QAT at lr / 10 unless given


@pytest.mark.parametrize("method", METHODS)
def test_smoke_each_method(method, data):
    seen = []
    model, info = _train(data, DigitsConfig(method=method, train_subset=256, **SMOKE), progress=seen.append)
    assert [r["phase"] for r in seen] == [r["phase"] for r in info["history"]]
    assert all(r["step_mode"] == "eager" for r in seen) and 0.0 <= info["accuracy"] <= 1.0
    assert not model.training and model.quantize == (method in ("apot", "spq", "ppq"))
    pruned = method in ("fpgm", "spq", "ppq")
    assert info["sparsity"]["kept"] == ([12, 12, 23] if pruned else [16, 16, 32])
    if pruned:
        for group in model.prune_groups():
            for conv, bn in group:
                drop = ~conv.filter_mask
                assert (conv.weight[drop] == 0).all() and (bn.weight[drop] == 0).all()


def test_calibration_covers_the_pooled_quantizer(data):
    """qpool's alpha is set from what it sees (relu(bn4(.))), not left at its 8.0 default."""
    model, _ = _train(data, DigitsConfig(method="apot", epochs=1, train_subset=128))
    assert 0.01 < float(model.qpool.alpha.detach()) < 8.0


def test_checkpoint_roundtrip(tmp_path, data):
    model, _ = _train(data, DigitsConfig(method="ppq", train_subset=128, **SMOKE))
    for m in (model, slice_pruned(model)):
        path = save_checkpoint(m, tmp_path / "ck.pt", {"acc": 0.5})
        m2, meta = load_checkpoint(path)
        assert meta == {"acc": 0.5} and m2.widths == m.widths and m2.quantize
        with torch.no_grad():
            assert torch.equal(m(data.x_test), m2(data.x_test))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind


@pytest.mark.slow
def test_train_digits_recipe(tmp_path):
    from apotflow.sw.digits_run import train_and_export

    info = train_and_export(tmp_path, seed=0, log=lambda *a: None)  # its time is a benchmark figure, not a test
    assert info["accuracy_int"] >= 0.96, info["accuracy_int"]


def _state(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_deterministic_whatever_the_threads(data):
    """The same seed gives the same model bit for bit with 1 or 2 CPU threads set (the trainer sets its own)."""
    cfg = DigitsConfig(method="ppq", train_subset=256, **SMOKE)
    before = torch.get_num_threads()
    states = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            states.append(_state(_train(data, cfg)[0]))
            assert torch.get_num_threads() == threads  # restored after training
    finally:
        torch.set_num_threads(before)
    assert _equal(*states)


def test_resume_equals_uninterrupted(tmp_path, data):
    """Stopped after any epoch, a run resumed from its checkpoint ends with the same model bit for bit."""
    cfg = DigitsConfig(method="ppq", train_subset=256, epochs=2, stage_epochs=1, qat_epochs=2)
    whole = _state(_train(data, cfg)[0])
    ckpt = tmp_path / "train.ckpt"

    class Stop(Exception):
        pass

    def second_epoch_stops(rec, seen=[]):  # noqa: B006  (one list per call of _train below)
        seen.append(rec)
        if len(seen) == 2:  # before that epoch's checkpoint: the next run trains it again
            raise Stop

    for _ in range(3):  # stops in the float phase, at the first pruning stage, in the second
        with pytest.raises(Stop):
            _train(data, cfg, str(ckpt), progress=lambda rec, seen=[]: second_epoch_stops(rec, seen))
    model, info = _train(data, cfg, str(ckpt))
    assert info["resumes"] == 3 and _equal(_state(model), whole)


def test_calibration_images_span_a_class_ordered_set(data):
    """The QAT / SPQ alphas are calibrated on images spread over the training set: on a set ordered by
    class (the CIFAR-10 JPEG copy) every class is seen; the digits set (shuffled, < 2,048 images) keeps its
    first 1,024, so digits models are what they were."""
    from apotflow.sw.evaluation import calibration_images

    labels = torch.arange(10).repeat_interleave(5000)  # 50,000 labels, class-ordered like the JPEG copy
    picked = calibration_images(labels)
    assert len(picked) == 1024 and set(picked.tolist()) == set(range(10))
    assert torch.equal(calibration_images(data.x_train), data.x_train[:1024])
