"""Core ML's ImageType: y = x * scale + bias with ONE scalar scale and a per-channel bias."""

from __future__ import annotations

from ...preprocess import Preprocess
from ..base import Native


class ImageType(Native):
    """Exact for one scale shared by every channel; a per-channel std (ImageNet's) is approximated by the best
    scalar (`Preprocess.imagetype_fit`), or baked into the graph ("auto", the default export)."""

    how = "ImageType scale/bias"
    graph_options = {"normalization": "bake"}

    def exact(self, pre: Preprocess) -> bool:
        return pre.imagetype_fit().exact

    def note(self, pre: Preprocess) -> str:
        if self.exact(pre):
            return super().note(pre)
        return (f"not exact natively: ImageType's one scale is off by up to {pre.imagetype_fit().max_error:.4g}; "
                "exported with the normalization baked into the graph")
