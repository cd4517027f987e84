"""The model zoo: every built-in model's name, listed once (CLI choices, cifar_run, randmodel, checkpoints,
tests and bench read this). Torch-free, so ``apotflow --help`` does not import torch.

A ``ZooModel`` names its class (``module:Class`` under apotflow.sw.models), the constructor arguments
that make it this model, how random-weight exports shrink its widths (``--width-scale``), and its input.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

# each data set's images: (channels, height, width) and the largest pixel value (pixels are integers 0..max)
DATASETS: dict[str, tuple[tuple[int, int, int], int]] = {"digits": ((1, 8, 8), 16), "cifar10": ((3, 32, 32), 255)}


@dataclass(frozen=True)
class ZooModel:
    name: str
    cls: str  # "module:Class" under apotflow.sw.models
    kwargs: dict = field(default_factory=dict)
    dataset: str = "cifar10"  # cifar10 (3x32x32 pixels 0..255, GPU trainer) | digits (1x8x8, 0..16, CPU)
    scaled: str = "widths"  # how width_scale applies: "widths" (3 stage widths, multiples of 4) | "scale"
    about: str = ""

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return DATASETS[self.dataset][0]


_RESNET = "resnet:CifarResNet"
ZOO: dict[str, ZooModel] = {m.name: m for m in (
    ZooModel("digits", "digits:DigitsNet", dataset="digits", scaled="none",
             about="small residual CNN for scikit-learn's 8x8 digits (the embedded demo model)"),
    ZooModel("resnet8", _RESNET, {"depth": 8, "shortcut": "B", "conv_bias": True},
             about="MLPerf Tiny IC01 ResNet-8: 1x1 stride-2 projection shortcuts, biases on every conv"),
    ZooModel("resnet20", _RESNET, {"depth": 20}, about="CIFAR ResNet-20, option-A shortcuts"),
    ZooModel("resnet20bn", _RESNET, {"depth": 20, "shortcut": "BN"},
             about="CIFAR ResNet-20 with 1x1 stride-2 projection shortcuts + BatchNorm (the APoT authors' variant)"),
    ZooModel("resnet32", _RESNET, {"depth": 32}, about="CIFAR ResNet-32, option-A shortcuts"),
    ZooModel("resnet56", _RESNET, {"depth": 56}, about="CIFAR ResNet-56, option-A shortcuts"),
    ZooModel("resnet110", _RESNET, {"depth": 110}, about="CIFAR ResNet-110, option-A shortcuts"),
    ZooModel("vgg16", "vgg:CifarVGG16", {"hidden": 512}, scaled="scale",
             about="CIFAR VGG-16 with the FPGM classifier (13 convs; fc 512 + BatchNorm1d + ReLU; fc 10)"),
    ZooModel("vgg16-1fc", "vgg:CifarVGG16", {"hidden": 0}, scaled="scale",
             about="CIFAR VGG-16 with one fc (13 convs; fc 10): the VGG-16 of the runs before the FPGM classifier"),
)}

CIFAR_MODELS = tuple(n for n, m in ZOO.items() if m.dataset == "cifar10")
# zoo models that checkpoints of the APoT authors' CIFAR-10 code import into (sw/apot_checkpoint.py)
APOT_CHECKPOINT_ARCHS = ("resnet20bn",)
MODELS = tuple(ZOO)


def model_class(name: str):
    """The torch class of a zoo model (imports torch)."""
    mod, cls = ZOO[name].cls.split(":")
    return getattr(importlib.import_module(f"apotflow.sw.models.{mod}"), cls)


def input_shape_of(model) -> tuple[int, int, int] | None:
    """The input shape (C, H, W) of an instance of a zoo class (its data set's images), None outside the zoo."""
    cls = type(model)
    for m in ZOO.values():
        mod, name = m.cls.split(":")
        if cls.__name__ == name and cls.__module__.endswith(f"models.{mod}"):
            return m.input_shape
    return None


def build(name: str, width_scale: float = 1.0, **kw):
    """An untrained zoo model by name; kw (w_bits, a_bits, ...) go to the constructor; width_scale
    shrinks channel counts (tests, small hardware; stage widths stay multiples of 4)."""
    if name not in ZOO:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    m = ZOO[name]
    args = {**m.kwargs, **kw}
    if width_scale != 1.0:
        if m.scaled == "widths":
            args["widths"] = tuple(max(4, 4 * round(w * width_scale / 4)) for w in (16, 32, 64))
        elif m.scaled == "scale":
            args["scale"] = width_scale
        else:
            raise ValueError(f"{name} has no width scale")
    return model_class(name)(**args)
