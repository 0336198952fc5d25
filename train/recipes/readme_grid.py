"""Render the README picture: gray | model | ground truth | predicted saliency, one row per
validation photo.

    python train/recipes/readme_grid.py VAL_DIR docs/default_model_grid.jpg [--model W] [--rows 6]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from scgan_rt.backends import TorchBackend
from scgan_rt.images import load_image
from scgan_rt.pipeline import Colorizer
from scgan_rt.weights import default_weights

TILE = 192


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("val_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--rows", type=int, default=6)
    a = ap.parse_args()
    weights = a.model or default_weights()
    col = Colorizer(TorchBackend(weights, device="cpu", with_saliency=True), size=256)
    files = sorted(p for p in a.val_dir.iterdir() if p.suffix.lower() in (".jpg", ".png"))[: a.rows]
    head = 22
    grid = Image.new("RGB", (4 * TILE, head + len(files) * TILE), "white")
    draw = ImageDraw.Draw(grid)
    for i, label in enumerate(("gray input", "scgan-lite default", "ground truth", "predicted saliency")):
        draw.text((i * TILE + 6, 5), label, fill="black")
    for r, f in enumerate(files):
        im = load_image(f)
        rgb, sal = col.colorize([im])[0]
        gt = Image.open(f).convert("RGB")
        tiles = [Image.fromarray(np.round(im.luma * 255).astype(np.uint8)).convert("RGB"),
                 Image.fromarray(np.round(rgb * 255).astype(np.uint8)), gt,
                 Image.fromarray(np.round(sal * 255).astype(np.uint8)).convert("RGB")]
        for c, t in enumerate(tiles):
            t = t.resize((TILE, TILE), Image.BICUBIC)
            grid.paste(t, (c * TILE, head + r * TILE))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(a.out, quality=88)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
