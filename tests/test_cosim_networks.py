"""Whole reduced-width CIFAR networks through the generated RTL on Verilator, every layer bit-exact.

Full-width ResNet-20/56 and VGG-16 at 64 lanes are benchmarks (bench/cosim_networks.py); here the same
networks at a quarter (ResNet-20) or a sixteenth (VGG-16) of their widths keep CI within a minute or two.
"""

from __future__ import annotations

import pytest

from apotflow.hw.config import AcceleratorConfig
from apotflow.hw.fit import fit
from apotflow.sim.flow import cosim_model
from apotflow.sw import export
from apotflow.sw.convert import export_random

pytestmark = pytest.mark.verilator


@pytest.mark.parametrize("arch, scale, lanes", [("resnet20", 0.25, 16), ("vgg16", 0.0625, 8)])
def test_network_bit_exact_on_verilator(arch, scale, lanes, tmp_path):
    path, _ = export_random(arch, tmp_path / f"{arch}.apot", prune=0.3, seed=1, width_scale=scale)
    net = export.load(path)
    s = cosim_model(net, fit(net, AcceleratorConfig(lanes=lanes)), tmp_path / "cosim", 2, seed=2, log=lambda m: None)
    assert s["images"] == 2 and s["mismatches"] == 0, s["first_mismatch"]
    assert s["cycles_total"] == s["cycles_model"]
    assert all(pl["cycles"] == pl["cycles_model"] for pl in s["per_layer"])
    kinds = {pl["kind"] for pl in s["per_layer"]}
    assert kinds >= {"conv", "pool", "fc"}
