"""Render the README pictures, one row per validation photo:

    # gray | default model | ground truth | predicted saliency
    python train/recipes/readme_grid.py VAL_DIR docs/default_model_grid.jpg [--model W] [--rows 6]
    # gray | old default | new default | ground truth (a side-by-side of two models)
    python train/recipes/readme_grid.py VAL_DIR docs/old_vs_new.jpg --model scgan-lite-v1 --model default \
        --label "old default (scgan-lite-v1)" --label "new default" --no-saliency --rows 25
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from scgan_rt.backends.torch import TorchBackend
from scgan_rt.images import load_image
from scgan_rt.colorizer import Colorizer
from scgan_rt.weights import resolve_weights

TILE = 192


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("val_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--model", action="append", default=None, help="'default', a bundled name or a file (repeatable)")
    ap.add_argument("--label", action="append", default=None)
    ap.add_argument("--rows", type=int, default=6)
    ap.add_argument("--no-saliency", action="store_true")
    a = ap.parse_args()
    models = a.model or ["default"]
    labels = a.label or ["default model"] * len(models)
    saliency = not a.no_saliency
    cols = [Colorizer(TorchBackend(resolve_weights(m), device="cpu", with_saliency=saliency and i == 0), size=256)
            for i, m in enumerate(models)]
    files = sorted(p for p in a.val_dir.iterdir() if p.suffix.lower() in (".jpg", ".png"))[: a.rows]
    head = 22
    names = ["gray input", *labels, "ground truth"] + (["predicted saliency"] if saliency else [])
    grid = Image.new("RGB", (len(names) * TILE, head + len(files) * TILE), "white")
    draw = ImageDraw.Draw(grid)
    for i, label in enumerate(names):
        draw.text((i * TILE + 6, 5), label, fill="black")
    for r, f in enumerate(files):
        im = load_image(f)
        outs = [c.colorize_batch([im])[0] for c in cols]
        tiles = [Image.fromarray(np.round(im.luma * 255).astype(np.uint8)).convert("RGB")]
        tiles += [Image.fromarray(np.round(rgb * 255).astype(np.uint8)) for rgb, _ in outs]
        tiles.append(Image.open(f).convert("RGB"))
        if saliency:
            tiles.append(Image.fromarray(np.round(outs[0][1] * 255).astype(np.uint8)).convert("RGB"))
        for c, t in enumerate(tiles):
            grid.paste(t.resize((TILE, TILE), Image.BICUBIC), (c * TILE, head + r * TILE))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(a.out, quality=88)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
