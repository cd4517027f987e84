"""apotflow model zoo."""

from .digits import DigitsNet

__all__ = ["DigitsNet"]
