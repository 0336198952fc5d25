"""Shared helpers for the training tests (no tests here): tiny models and real photo folders."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from scgan_rt.config import ModelConfig, TrainConfig, preset

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def tiny_model(**kw) -> ModelConfig:
    # width 1/16 -> 4..32 channels; d_channels 8 -> 4..64: a few ms per step at 256.
    return preset("scgan", width=1 / 16, d_channels=8, **kw)


def tiny_train(**kw) -> TrainConfig:
    base = dict(batch_size=2, epochs=1, workers=0, log_every=1, sample_every=1)
    base.update(kw)
    return TrainConfig(**base)


def photo_dir(root: Path, names=PHOTOS, size: int = 300, nested: bool = True) -> Path:
    """Real photos from scikit-image, downscaled so tests decode fast."""
    from skimage import data

    root.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(names):
        im = Image.fromarray(getattr(data, n)())
        im.thumbnail((size, size))
        d = root / (f"class{i % 2}" if nested else "")
        d.mkdir(parents=True, exist_ok=True)
        im.save(d / f"{n}.jpg", quality=92)
    return root


def vgg_standin(path: Path) -> Path:
    """A randomly initialised VGG-16 state dict standing in for the ImageNet weights."""
    from torchvision.models import vgg16

    torch.manual_seed(0)
    torch.save(vgg16(weights=None).features.state_dict(), path)
    return path


def gray_image(path: Path) -> None:
    g = (np.random.default_rng(0).random((300, 300)) * 255).astype(np.uint8)
    Image.fromarray(np.stack([g] * 3, -1)).save(path)
