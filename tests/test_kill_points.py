"""A slice of bench/kill_points.py: a digits run (tiny recipe) killed inside a checkpoint write and inside the
publication of its outputs, resumed each time, ends with the uninterrupted run's model bit for bit."""

import importlib.util
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("kill_points", ROOT / "bench/kill_points.py")
kp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kp)

RECIPE = {"epochs": 1, "stage_epochs": 1, "qat_epochs": 1, "train_subset": 256}


def test_killed_and_resumed_run_equals_the_uninterrupted_one(tmp_path):
    from apotflow.sw.digits_run import train_and_export

    for name, seed in (("reference", 0), ("old", 1)):  # in this process: the trainer pins its threads
        train_and_export(tmp_path / name, seed=seed, log=lambda *a: None, **RECIPE)
    r = kp.run_chain(tmp_path / "run", tmp_path / "old", tmp_path / "reference",
                     ["ckpt:partial", "publish:removed:model.pt"], 0, 1, RECIPE, random.Random(0), log=lambda *a: None)
    assert [k["fired"] for k in r["kills"]] == [True, True], r
    assert [k["problems"] for k in r["kills"]] == [[], []], r
    assert r["kills"][0]["files"] == {"model.pt": "old", "model.apot": "old", "train.json": "old"}
    assert r["kills"][1]["files"] == {"model.pt": "absent", "model.apot": "old", "train.json": "absent"}
    assert r["final"]["resumes"] >= 1 and {**r["final"], "resumes": 1} == {
        "model_apot_equal": True, "state_dict_equal": True, "left_over": [], "resumes": 1, "stale_from_last_kill": []}, r
