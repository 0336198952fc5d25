"""Draw docs/video_strip.jpg: frames of the bundled gray clip, gray (top) and colorized
(bottom), from `scgan-rt colorize` output.

    scgan-rt colorize scgan_rt/samples/video/carphone_gray.mp4 -o /tmp/c.mp4
    python scripts/video_strip.py scgan_rt/samples/video/carphone_gray.mp4 /tmp/c.mp4 docs/video_strip.jpg
"""
from __future__ import annotations

import sys

import av
import numpy as np
from PIL import Image


def frames(path: str, picks: list[int]) -> list[np.ndarray]:
    with av.open(path) as c:
        return [f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i in picks]


def main() -> None:
    src, colorized, dst = sys.argv[1:4]
    picks = [0, 30, 60, 90, 119]
    rows = [np.hstack(frames(p, picks)) for p in (src, colorized)]
    im = Image.fromarray(np.vstack(rows))
    im.resize((im.width * 2, im.height * 2), Image.LANCZOS).save(dst, quality=90)


if __name__ == "__main__":
    main()
