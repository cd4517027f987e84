"""apotflow model zoo."""

from .digits import DigitsNet
from .resnet import CifarResNet
from .vgg import CifarVGG16

__all__ = ["CifarResNet", "CifarVGG16", "DigitsNet"]
