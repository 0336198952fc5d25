"""scgan-rt: SCGAN colorization for photos and films, from training to TensorRT.

``from scgan_rt import Colorizer`` is the Python API (``scgan_rt.api``); it is loaded on
first use so that ``import scgan_rt.<module>`` stays light.
"""
from typing import Any

from .version import __version__

__all__ = ["Colorizer", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Colorizer":
        from .api import Colorizer

        return Colorizer
    raise AttributeError(f"module 'scgan_rt' has no attribute {name!r}")
