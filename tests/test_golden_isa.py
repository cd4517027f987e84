"""Golden integer model vs the fake-quant model, and the compiled program (ISA interpreter) vs golden."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_digits_net

from apotflow.hw.compile import CompileError, compile_net, first_mismatch, run_functional, weight_entries
from apotflow.hw.config import AcceleratorConfig, ConfigError
from apotflow.hw.fit import fitted_config
from apotflow.sim.cosim import golden_tensors
from apotflow.sw.golden import predict
from apotflow.sw.lower import naf_weight, nearest_few_digits


def test_golden_agrees_with_fake_quant(digits_images):
    net, model = random_digits_net(2, prune=0.3)
    x, _ = digits_images
    with torch.no_grad():
        pf = model(torch.from_numpy(x).float()).argmax(1).numpy()
    pi = predict(net, x)
    assert (pf == pi).mean() >= 0.97  # the residual scale K is the one rounding of the integer model


def test_first_layer_codes_equal_fake_quant_codes(digits_images):
    net, m = random_digits_net(3)
    x, _ = digits_images
    xt = torch.from_numpy(x[:64]).float()
    with torch.no_grad():
        h1 = torch.relu(m.bn1(m.conv1(xt / 16, xt, torch.tensor(1 / 16))))
        codes = m.conv2.aq.int_codes(h1).numpy()
    assert np.array_equal(golden_tensors(net, x[:64])["h1"], codes)


@pytest.mark.parametrize("lanes", [1, 4, 16, 64])
def test_compiled_program_equals_golden(small_net, digits_images, lanes):
    x, _ = digits_images
    cfg = fitted_config(small_net, AcceleratorConfig(lanes=lanes))
    prog = compile_net(small_net, cfg)
    exp = golden_tensors(small_net, x[:6])
    for i in range(6):
        got = run_functional(prog, x[i])
        assert first_mismatch({k: v[i] for k, v in exp.items()}, got, list(prog.placements)) is None


def test_stride2_input_is_phase_split(small_net):
    prog = compile_net(small_net, fitted_config(small_net, AcceleratorConfig()))
    assert prog.placements["h3"].phase and not prog.placements["h1"].phase


@pytest.mark.parametrize("v", [1, -1, 3, 7, -10, 48, 127, -127, 85, 255, 1 << 11])
@pytest.mark.parametrize("terms", [1, 2, 3])
def test_weight_entries_sum_to_the_weight(v, terms):
    entries = weight_entries(v, terms, 15)
    assert sum((-1) ** s * sum(1 << k for k in sh) for s, sh in entries) == v
    assert all(1 <= len(sh) <= terms for _, sh in entries)


def test_apot_weights_take_one_entry():
    for mag in (1, 2, 3, 4, 6, 8, 10):
        assert len(weight_entries(mag, 2, 15)) == 1 and len(weight_entries(-mag << 5, 2, 15)) == 1


def test_eight_bit_weights_take_at_most_three_entries():
    assert max(len(weight_entries(v, 2, 15)) for v in range(-127, 128) if v) <= 3


def test_few_digit_rounding():
    for x in (0.4, 7.7, 1234.5, 300.2, 1000.9):
        k = nearest_few_digits(x)
        assert naf_weight(k) <= 4 and abs(k - x) <= max(1, abs(x) * 2 ** -4)


def test_config_too_small_is_a_clear_error(small_net):
    with pytest.raises(CompileError, match="act_depth"):
        compile_net(small_net, AcceleratorConfig(act_depth=64))
    with pytest.raises(CompileError, match="accumulator"):
        compile_net(small_net, AcceleratorConfig(acc_bits=12))
    with pytest.raises(CompileError, match="wgt_depth"):
        compile_net(small_net, AcceleratorConfig(wgt_depth=64))
    with pytest.raises(CompileError, match="shift"):
        compile_net(small_net, AcceleratorConfig(shift_bits=2))


@pytest.mark.parametrize("kw", [{"lanes": 3}, {"lanes": 0}, {"acc_bits": 4}, {"act_depth": 1000}, {"terms": 9},
                                {"wgt_ram": 2}, {"wgt_ram": -1}])
def test_impossible_configs(kw):
    with pytest.raises(ConfigError):
        AcceleratorConfig(**kw)


def test_config_round_trip():
    c = AcceleratorConfig(lanes=32, acc_bits=20)
    assert AcceleratorConfig.from_dict(c.to_dict()) == c
    w = AcceleratorConfig(wgt_ram=1)
    assert AcceleratorConfig.from_dict(w.to_dict()) == w
    old = {k: v for k, v in c.to_dict().items() if k != "wgt_ram"}  # a dict from before wgt_ram: a ROM
    assert AcceleratorConfig.from_dict(old) == c
    with pytest.raises(ConfigError, match="unknown"):
        AcceleratorConfig.from_dict({**c.to_dict(), "bogus": 1})


def test_max_pooling_on_the_array(rng):
    """2x2/2 max pooling (reduce=max over phase-split reads) then an fc: golden == compiled program."""
    from apotflow.sw.intnet import IntNet, Op, Source, TensorSpec

    c = 3
    eye = np.zeros((c, c, 2, 2), dtype=np.int64)
    eye[np.arange(c), np.arange(c)] = 1
    fcw = rng.integers(-127, 128, size=(5, c, 2, 2))
    net = IntNet(
        {"x": TensorSpec("x", (c, 4, 4), 48), "m": TensorSpec("m", (c, 2, 2), 48),
         "y": TensorSpec("y", (5, 1, 1), 10**6, signed=True)},
        [Op("maxpool", "pool", "m", [Source("x", eye, 2, 0, role="pool")], np.zeros(c, np.int64), "shift",
            reduce="max"),
         Op("fc", "fc", "y", [Source("m", fcw, 1, 0)], rng.integers(-50, 50, size=5), "raw")],
        "x", "y").validate()
    x = rng.integers(0, 49, size=(8, c, 4, 4))
    exp = golden_tensors(net, x)
    assert np.array_equal(exp["m"], x.reshape(8, c, 2, 2, 2, 2).max(axis=(3, 5)))
    prog = compile_net(net, fitted_config(net, AcceleratorConfig(lanes=4)))
    for i in range(8):
        got = run_functional(prog, x[i])
        assert first_mismatch({k: v[i] for k, v in exp.items()}, got, ["x", "m", "y"]) is None
