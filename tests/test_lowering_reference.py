"""The lowering's output pinned: zoo models with deterministic weights (and a committed checkpoint) export
to the .apot bytes that the hand-written lowerings of revision 79774d7 gave them, before one graph
lowering replaced them (bench/lowering_equivalence.py compares the two paths on many more models:
bench/results/lowering-equivalence.json). A change that alters any op, name, integer or meta fails here.

The weights are drawn from a seeded generator and the clipping thresholds set, with no forward pass (no
float convolution whose rounding could depend on the CPU); the sha256 values were computed with the
old revision's tree on the PYTHONPATH (``reference_bytes`` below, run by the old ``apotflow``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent

# sha256 of export.to_bytes(lower(model)): revision 79774d7 (hand-written lowerings)
REFERENCE = {
    "digits": "2a693758b7fdc13c5b98380518e8acc9bf31a4eaad4b38dd9d8e8d9fd6a797dc",
    "resnet20": "08ca4057e57d5ac227ac539f8f211d5eebdc5eb095db3329b69c6eb052e7cb56",
    "resnet8": "939c443a12ebe5629b21175c3d9842749894ea5b356e8f8a8eba92307ec889bf",
    "vgg16": "c47471dc9eb38a73c35cfbf9624256e7be2c1e2568ed987624efd3ad38d95fe0",
    "vgg16-1fc": "a57cd1db4a725c57baa4e55a4bd54a01eb3a387fda2026569d063ca2caa89fbc",
    "checkpoint/r20-ppq-s80": "f12db1b18c9b89f526c9c10327390c157c0b1daedae910c8c4c8518afcf993ac",
}
MODELS = {"digits": ("digits", 1.0, 0.3), "resnet20": ("resnet20", 0.5, 0.3), "resnet8": ("resnet8", 0.5, 0.3),
          "vgg16": ("vgg16", 1 / 16, 0.3), "vgg16-1fc": ("vgg16-1fc", 1 / 16, 0.0)}


def seeded_model(name: str, seed: int = 5):
    """A zoo model (width-scaled, GM-pruned) with seeded weights, BatchNorm statistics and clipping thresholds."""
    from apotflow.sw import zoo
    from apotflow.sw.prune import apply_masks, compute_masks
    from apotflow.sw.quant import ActQuantizer, QConv2d, QLinear, set_quantize

    arch, scale, prune = MODELS[name]
    m = zoo.build(arch, scale) if scale != 1.0 else zoo.build(arch)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (QConv2d, QLinear)):
                fan_in = mod.weight[0].numel()
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * (2 / fan_in) ** 0.5)
                if mod.bias is not None:
                    mod.bias.copy_(torch.rand(mod.bias.shape, generator=g) * 0.2 - 0.1)
            elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
                n = mod.num_features
                mod.weight.copy_(torch.rand(n, generator=g) + 0.5)
                mod.bias.copy_(torch.rand(n, generator=g) * 0.6 - 0.3)
                mod.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                mod.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            elif isinstance(mod, ActQuantizer):
                mod.alpha.fill_(1.5 + float(torch.rand(1, generator=g)))
    if prune:
        compute_masks(m, prune)
    apply_masks(m)
    return set_quantize(m, True).eval()


def reference_bytes(name: str) -> bytes:
    """The .apot bytes of one reference case with whichever apotflow is importable."""
    import tempfile

    from apotflow.sw import convert, export
    from apotflow.sw.lower import lower

    if name.startswith("checkpoint/"):  # what `apotflow export CKPT -o` writes
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "m.apot"
            convert.export_checkpoint(ROOT / "bench" / "models" / (name.split("/")[1] + ".pt"), out)
            return out.read_bytes()
    return export.to_bytes(lower(seeded_model(name)))


@pytest.mark.parametrize("name", list(REFERENCE))
def test_lowering_gives_the_reference_bytes(name):
    assert hashlib.sha256(reference_bytes(name)).hexdigest() == REFERENCE[name]


def test_export_checkpoint_gives_the_reference_bytes(tmp_path):
    """`apotflow export CKPT -o` (sw/convert.export_checkpoint) writes the same bytes."""
    from apotflow.sim.cli import main

    out = tmp_path / "m.apot"
    assert main(["export", str(ROOT / "bench" / "models" / "r20-ppq-s80.pt"), "-o", str(out)]) == 0
    assert hashlib.sha256(out.read_bytes()).hexdigest() == REFERENCE["checkpoint/r20-ppq-s80"]


@pytest.mark.slow
def test_export_random_resnet8_is_the_committed_file(tmp_path):
    """bench/models/resnet8-rand.apot (written by the hand-written lowering: `apotflow export --random --arch
    resnet8 -o`) is re-exported byte for byte. Slow (a full-width calibration), and its random calibration
    runs float convolutions, whose rounding may differ on another CPU."""
    from apotflow.sim.cli import main

    out = tmp_path / "r8.apot"
    assert main(["export", "--random", "--arch", "resnet8", "-o", str(out)]) == 0
    assert out.read_bytes() == (ROOT / "bench" / "models" / "resnet8-rand.apot").read_bytes()


if __name__ == "__main__":  # print the sha256 of every case (run with the reference revision importable)
    for n in REFERENCE:
        print(f'    "{n}": "{hashlib.sha256(reference_bytes(n)).hexdigest()}",')
