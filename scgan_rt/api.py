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
from .errors import EXIT_BAD_MODEL, EXIT_RESOURCE, InputError, ModelError, ResourceError, ScganError
from .pipeline import Job, Report, colorize_files, refuse_input_as_output
from .video import VideoReport, colorize_video


class Colorizer(colorizer.Colorizer):
    def colorize_file(self, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
        """Colorize one photo or video file into ``dst`` (written atomically); returns ``dst``.
        Raises the item's ``ScganError`` when it fails; ``UsageError`` when ``dst`` is ``src``."""
        refuse_input_as_output(Path(src), Path(dst))
        rep: Report = colorize_files([Job(Path(src), Path(dst))], self, self.config.replace(overwrite=True))
        if rep.failed:
            raise _ERRORS.get(rep.failed_exit_codes[0], InputError)(rep.failed[0][1])
        return Path(dst)

    def colorize_video(self, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> VideoReport:
        """Colorize a video; the report has frame counts, speed and warnings."""
        refuse_input_as_output(Path(src), Path(dst))
        return colorize_video(src, dst, self, self.config)


# An item's failure comes back as the class its exit code stands for.
_ERRORS: dict[int, type[ScganError]] = {EXIT_BAD_MODEL: ModelError, EXIT_RESOURCE: ResourceError}
