"""Training data: colour photos -> (gray, rgb, saliency) crops in the paper's ranges.

Pipeline (paper §IV-A, original authors' code ``5151d9b``): short side resized up to the
crop size when smaller (optionally to ``load_size`` first), one random crop shared by the
photo and its saliency map, gray = BT.601 luma Y = 0.299R + 0.587G + 0.114B (the Y of
full-range YCbCr that the inference pipeline recombines with), gray and RGB mapped to
[-1, 1], saliency to [0, 1], and N(0, 0.005) noise added to the gray input.

Determinism: every sample's randomness (crop offset, noise) comes from a generator seeded
with ``(seed, epoch, index)``, and the sampler yields ``(epoch, index)`` pairs. The data
order and every crop therefore depend only on the seed, never on worker scheduling, which
is what makes ``--resume`` bit-exact and lets a resumed epoch skip already-seen batches
without decoding them.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from scgan_rt.color import LUMA as BT601_LUMA
from scgan_rt.errors import InputError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
# Paired mode also accepts N-channel arrays stored as (H, W, C) .npy files (paper §F).
ARRAY_EXTS = {".npy"}
LUMA = np.asarray(BT601_LUMA, dtype=np.float32)  # BT.601, as in scgan_rt's YCbCr


def list_images(root: Path, exts: set[str] = IMAGE_EXTS) -> list[Path]:
    """Relative paths of all images below ``root`` (any depth), sorted for a stable order."""
    if not root.is_dir():
        raise InputError(f"data directory not found: {root}")
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.suffix.lower() in exts and p.is_file()
                  and not p.name.startswith("."))


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Süsstrunk (2003) colourfulness on 0-255 RGB; < ~10 looks gray."""
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def _probe(path: Path) -> float | None:
    """Decode a small version of the photo (JPEG draft mode decodes at 1/8 scale, so this
    is cheap) and return its colourfulness; None when the file cannot be decoded."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (128, 128))
            im = im.convert("RGB")
            im.thumbnail((128, 128))
            return colorfulness(np.asarray(im))
    except Exception:  # truncated, corrupt, unsupported: reported as skipped by the caller
        return None


@dataclass
class ScanResult:
    files: list[Path]  # relative paths kept for training
    skipped_corrupt: list[Path]
    skipped_gray: list[Path]

    def summary(self) -> str:
        s = f"{len(self.files)} colour photos"
        if self.skipped_gray:
            s += f", {len(self.skipped_gray)} near-grayscale skipped"
        if self.skipped_corrupt:
            names = ", ".join(str(p) for p in self.skipped_corrupt[:3])
            s += f", {len(self.skipped_corrupt)} unreadable skipped ({names}{', ...' if len(self.skipped_corrupt) > 3 else ''})"
        return s


def scan_photos(root: Path, min_colorfulness: float, threads: int = 4) -> ScanResult:
    """Validate every photo once and drop unreadable and near-gray ones. Raises
    ``InputError`` when nothing usable remains, before any training work starts."""
    rel = list_images(root)
    if not rel:
        raise InputError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) found under {root}")
    # PIL releases the GIL while decoding, so threads give real parallelism here.
    with ThreadPoolExecutor(max(1, threads)) as ex:
        scores = list(ex.map(_probe, (root / p for p in rel)))
    files, bad, gray = [], [], []
    for p, c in zip(rel, scores):
        if c is None:
            bad.append(p)
        elif c < min_colorfulness:
            gray.append(p)
        else:
            files.append(p)
    result = ScanResult(files, bad, gray)
    if not files:
        raise InputError(f"no usable colour photos under {root}: {result.summary()}")
    return result


def map_path(maps_dir: Path, rel: Path) -> Path:
    """Saliency maps mirror the photo tree with a .png suffix."""
    return maps_dir / rel.with_suffix(".png")


def check_maps(maps_dir: Path, files: Sequence[Path]) -> None:
    missing = [str(map_path(maps_dir, f).relative_to(maps_dir)) for f in files if not map_path(maps_dir, f).is_file()]
    if missing:
        raise InputError(f"{len(missing)} saliency maps missing in {maps_dir} (e.g. {', '.join(missing[:3])}); "
                         "run `scgan-rt saliency` or omit --saliency-dir to compute them")


def _load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _load_input(path: Path, channels: int) -> np.ndarray:
    """Paired-mode input: (H, W, C) uint8/float array with ``channels`` channels."""
    if path.suffix.lower() == ".npy":
        a = np.load(path, allow_pickle=False)
        a = a[..., None] if a.ndim == 2 else a
    else:
        with Image.open(path) as im:
            a = np.asarray(im.convert("L") if channels == 1 else im)
            a = a[..., None] if a.ndim == 2 else a
    if a.shape[-1] != channels:
        raise InputError(f"{path.name} has {a.shape[-1]} channels, the model expects {channels}")
    return a


def _resize(a: np.ndarray, h: int, w: int, resample: int) -> np.ndarray:
    """Resize an (H, W, C) array channel by channel (PIL handles any dtype via mode F)."""
    if a.shape[:2] == (h, w):
        return a
    if a.dtype == np.uint8 and a.shape[-1] in (1, 3):  # fast path: PIL's native 8-bit resampler
        im = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
        return np.asarray(im.resize((w, h), resample)).reshape(h, w, a.shape[-1])
    chans = [np.asarray(Image.fromarray(a[..., c].astype(np.float32), mode="F").resize((w, h), resample))
             for c in range(a.shape[-1])]
    out = np.stack(chans, -1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8) if a.dtype == np.uint8 else out.astype(a.dtype)


def _to_unit(a: np.ndarray) -> np.ndarray:
    """uint8 (or uint16) -> float32 in [0, 1]; float arrays are taken as already in [0, 1]."""
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    return a.astype(np.float32)


class ColorizationDataset(Dataset):
    """Index with ``(epoch, i)``; returns a dict of CHW float tensors:
    ``gray`` [-1,1] (in_channels), ``rgb`` [-1,1] (3), ``sal`` [0,1] (1, zeros without maps)."""

    def __init__(self, root: Path, files: Sequence[Path], crop: int, *, maps_dir: Path | None = None,
                 input_dir: Path | None = None, in_channels: int = 1, noise_std: float = 0.005,
                 load_size: int = 0, seed: int = 0, hflip: bool = False, load_size_max: int = 0) -> None:
        self.root, self.files, self.crop = root, list(files), crop
        self.maps_dir, self.input_dir, self.in_channels = maps_dir, input_dir, in_channels
        self.noise_std, self.load_size, self.seed, self.hflip = noise_std, load_size, seed, hflip
        self.load_size_max = load_size_max
        self._input_names: dict[Path, Path] = {}
        if input_dir is not None:
            self._input_names = match_inputs(input_dir, self.files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, i = key
        rng = np.random.default_rng([self.seed, epoch, i])
        rel = self.files[i]
        rgb = _load_rgb(self.root / rel)
        planes = [rgb]
        if self.input_dir is not None:
            planes.append(_load_input(self.input_dir / self._input_names[rel], self.in_channels))
        if self.maps_dir is not None:
            with Image.open(map_path(self.maps_dir, rel)) as m:
                planes.append(np.asarray(m.convert("L"))[..., None])
        h, w = rgb.shape[:2]
        # Scale so the short side is load_size (if set), or at least the crop (paper).
        target = self.load_size or max(self.crop, min(h, w))
        if self.load_size_max:  # drawn only when enabled: other runs keep their sample stream
            target = int(rng.integers(self.load_size, self.load_size_max + 1))
        s = target / min(h, w)
        nh, nw = max(self.crop, round(h * s)), max(self.crop, round(w * s))
        planes = [_resize(p, nh, nw, Image.BICUBIC if j == 0 else Image.BILINEAR) for j, p in enumerate(planes)]
        y = int(rng.integers(0, nh - self.crop + 1))
        x = int(rng.integers(0, nw - self.crop + 1))
        planes = [_to_unit(p[y:y + self.crop, x:x + self.crop]) for p in planes]
        # Drawn only when enabled, so runs without flips keep their exact sample stream.
        if self.hflip and rng.random() < 0.5:
            planes = [p[:, ::-1] for p in planes]
        rgb01 = planes[0]
        if self.input_dir is not None:
            inp01 = planes[1]
        else:
            inp01 = (rgb01 @ LUMA)[..., None]
        sal = planes[-1] if self.maps_dir is not None else np.zeros((self.crop, self.crop, 1), np.float32)
        gray = inp01 * 2 - 1
        if self.noise_std > 0:
            gray = gray + rng.normal(0.0, self.noise_std, gray.shape).astype(np.float32)
        chw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32))  # noqa: E731
        return {"gray": chw(gray), "rgb": chw(rgb01 * 2 - 1), "sal": chw(sal), "index": torch.tensor(i)}


def match_inputs(input_dir: Path, targets: Sequence[Path]) -> dict[Path, Path]:
    """Paired mode: input file for each target, matched by relative path without suffix."""
    by_stem = {p.with_suffix(""): p for p in list_images(input_dir, IMAGE_EXTS | ARRAY_EXTS)}
    found, missing = {}, []
    for t in targets:
        p = by_stem.get(t.with_suffix(""))
        if p is None:
            missing.append(str(t))
        else:
            found[t] = p
    if missing:
        raise InputError(f"{len(missing)} targets have no input in {input_dir} (e.g. {', '.join(missing[:3])})")
    return found


class EpochSampler(Sampler[tuple[int, int]]):
    """Seeded per-epoch permutation, sharded across ranks like ``DistributedSampler``
    (padded so every rank gets the same number of batches), yielding ``(epoch, index)``.
    ``skip`` drops the first samples of this rank's shard: resuming mid-epoch costs nothing."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.per_rank = math.ceil(n / world)
        self.epoch, self.skip = 0, 0

    def batches_per_epoch(self) -> int:
        return self.per_rank // self.batch_size  # drop_last: BatchNorm dislikes ragged tails

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip = epoch, skip_batches * self.batch_size

    def _shard(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        order += order[: self.per_rank * self.world - self.n]
        mine = order[self.rank::self.world]
        return mine[: self.batches_per_epoch() * self.batch_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, i) for i in self._shard()[self.skip:]])

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() * self.batch_size - self.skip)
