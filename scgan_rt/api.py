"""The public Python API: ``from scgan_rt import Colorizer``.

    c = Colorizer.open(model="default", backend="auto")
    rgb = c.colorize(pil_image_or_array)
    c.colorize_file("scan.tif", "scan_colour.tif")
    c.colorize_video("film.mp4", "film_colour.mp4")

Everything the CLI does, without the CLI: the same settings (``InferConfig`` fields as
keyword arguments), the same atomic writes and the same errors (``scgan_rt.errors``).
"""
from __future__ import annotations

import os
from pathlib import Path

from . import colorizer
from .errors import InputError
from .pipeline import Job, Report, colorize_files
from .video import VideoReport, colorize_video


class Colorizer(colorizer.Colorizer):
    def colorize_file(self, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
        """Colorize one photo or video file into ``dst`` (written atomically); returns ``dst``.
        Raises the item's ``ScganError`` when it fails."""
        rep: Report = colorize_files([Job(Path(src), Path(dst))], self, self.config.replace(overwrite=True))
        if rep.failed:
            raise InputError(rep.failed[0][1])
        return Path(dst)

    def colorize_video(self, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> VideoReport:
        """Colorize a video; the report has frame counts, speed and warnings."""
        return colorize_video(src, dst, self, self.config)
