"""The paper's Table I metrics (PSNR, SSIM, CCI) and the evaluation protocol.

Protocol (paper §IV-B, authors' ``evaluation/``): every colour photo is resized to
256x256, its BT.601 luminance is colorized, and the result is compared with the 256x256
colour original. The grayscale baseline is that luminance replicated to three channels.

SSIM follows scikit-image's defaults as the authors used them (7x7 uniform window,
sample covariance, K1=0.01, K2=0.03, mean over channels) with ``data_range=1`` for
images in [0, 1]. The authors' old scikit-image silently used data_range=2 for floats,
which inflates SSIM; ``ssim_dr2`` reproduces that number for comparison with Table I.
CCI is Hasler & Suesstrunk's colourfulness on 0-255 RGB; "CCI ratio" is the share of
images whose CCI lies in [16, 20] inclusive.

Colour accuracy (not in the paper, which has no hue metric): mean CIEDE2000 (Sharma, Wu &
Dalal 2005) against the truth in CIE Lab (D65), and the **hue hit rate**: of the clearly
coloured truth pixels (C*ab >= 20), the share whose prediction has chroma >= 10 and a hue
within 45 degrees of the truth's, pooled over all pixels of all photos. The grayscale
baseline scores 0 there by construction.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from itertools import zip_longest
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import uniform_filter

from .color import ciede2000 as color_ciede2000
from .color import colorfulness, luma_of, rgb_to_lab
from .errors import InputError
from .images import is_supported
from .reading import frac, open_input, plane, source_colour, working_format

CCI_RANGE = (16.0, 20.0)
HUE_MIN_TRUTH_CHROMA = 20.0
HUE_MIN_PRED_CHROMA = 10.0
HUE_TOLERANCE_DEG = 45.0


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(data_range ** 2 / mse)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0, win: int = 7) -> float:
    """Mean SSIM over channels of ``H x W [x C]`` images (scikit-image compatible)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    n = win * win
    cov_norm = n / (n - 1)
    pad = (win - 1) // 2
    vals = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch], b[..., ch]
        ux, uy = uniform_filter(x, win), uniform_filter(y, win)
        vx = cov_norm * (uniform_filter(x * x, win) - ux * ux)
        vy = cov_norm * (uniform_filter(y * y, win) - uy * uy)
        vxy = cov_norm * (uniform_filter(x * y, win) - ux * uy)
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
        vals.append(s[pad:-pad, pad:-pad].mean())
    return float(np.mean(vals))


def cci(rgb01: np.ndarray) -> float:
    """Colourfulness of an ``H x W x 3`` image in [0, 1], computed on its 8-bit values."""
    rgb255 = np.round(np.clip(rgb01, 0, 1) * 255)
    return float(colorfulness(torch.from_numpy(rgb255).permute(2, 0, 1)[None])[0])


def lab_of(rgb01: np.ndarray) -> np.ndarray:
    """CIE Lab (D65) of an ``H x W x 3`` sRGB image in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(rgb01, dtype=np.float64)).permute(2, 0, 1)[None]
    return rgb_to_lab(t)[0].permute(1, 2, 0).numpy()


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference per pixel (kL = kC = kH = 1), ``... x 3`` Lab arrays."""
    t1, t2 = (torch.from_numpy(np.moveaxis(np.asarray(x, dtype=np.float64), -1, 0)) for x in (lab1, lab2))
    return color_ciede2000(t1, t2, dim=0).numpy()


def hue_hits(lab_pred: np.ndarray, lab_truth: np.ndarray) -> tuple[int, int]:
    """(hits, clearly coloured truth pixels) of the hue hit rate."""
    ct = np.hypot(lab_truth[..., 1], lab_truth[..., 2])
    cp = np.hypot(lab_pred[..., 1], lab_pred[..., 2])
    coloured = ct >= HUE_MIN_TRUTH_CHROMA
    dh = np.degrees(np.arctan2(lab_pred[..., 2], lab_pred[..., 1]) - np.arctan2(lab_truth[..., 2], lab_truth[..., 1]))
    dh = np.abs((dh + 180) % 360 - 180)
    hit = coloured & (cp >= HUE_MIN_PRED_CHROMA) & (dh <= HUE_TOLERANCE_DEG)
    return int(hit.sum()), int(coloured.sum())


def photo_scores(out: np.ndarray, truth: np.ndarray, lab_truth: np.ndarray) -> tuple[float, ...]:
    """(PSNR, SSIM, SSIM dr=2, CCI, mean CIEDE2000, hue hits, coloured pixels) of one photo."""
    lab = lab_of(out)
    hits, coloured = hue_hits(lab, lab_truth)
    return (psnr(out, truth), ssim(out, truth, 1.0), ssim(out, truth, 2.0), cci(out),
            float(ciede2000(lab, lab_truth).mean()), hits, coloured)


@dataclass
class Scores:
    psnr: float
    ssim: float
    ssim_dr2: float
    cci_mean: float
    cci_ratio: float
    ciede2000: float
    hue_hit_rate: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in self.__dict__.items()}


def _summarise(rows: list[tuple[float, ...]]) -> Scores:
    a = np.array(rows, dtype=np.float64)
    cc = a[:, 3]
    in_range = (cc >= CCI_RANGE[0]) & (cc <= CCI_RANGE[1])
    hue = a[:, 5].sum() / max(a[:, 6].sum(), 1.0)
    return Scores(a[:, 0].mean(), a[:, 1].mean(), a[:, 2].mean(), cc.mean(), in_range.mean(), a[:, 4].mean(), hue)


def load_eval_photo(path: Path, size: int = 256) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((size, size), Image.BICUBIC)
            return np.asarray(im, dtype=np.float32) / 255
    except Exception as e:
        raise InputError(f"cannot read {path}: {e}") from None


def evaluate(folder: str | os.PathLike[str], colorize: Callable[[np.ndarray], np.ndarray], size: int = 256,
             on_progress: Callable[[int, int], None] | None = None,
             on_item: Callable[[Path, np.ndarray, np.ndarray, np.ndarray, dict[str, float]], None] | None = None
             ) -> dict[str, object]:
    """Score ``colorize`` (gray ``H x W`` -> RGB ``H x W x 3``, both in [0, 1]) against the
    grayscale baseline on every photo under ``folder`` (the Table I protocol).
    ``on_item(path, gray, prediction, truth, scores)`` sees each photo (for ``--report``)."""
    files = sorted(f for f in Path(folder).rglob("*") if f.is_file() and is_supported(f))
    if not files:
        raise InputError(f"no images found under {folder}")
    model_rows, base_rows, gt_cci, failed = [], [], [], []
    for i, f in enumerate(files):
        try:
            gt = load_eval_photo(f, size)
        except InputError as e:
            failed.append((str(f), str(e)))
            continue
        gray = luma_of(gt)
        pred = colorize(gray)
        base = np.repeat(gray[..., None], 3, axis=2)
        lab_gt = lab_of(gt)
        for out, rows in ((pred, model_rows), (base, base_rows)):
            rows.append(photo_scores(out, gt, lab_gt))
        gt_cci.append(cci(gt))
        if on_item:
            m, b = model_rows[-1], base_rows[-1]
            on_item(f, gray, pred, gt, {"psnr": m[0], "ssim": m[1], "cci": m[3], "ciede2000": m[4],
                                        "hue_hit_rate": m[5] / max(m[6], 1), "gray_psnr": b[0], "gray_ssim": b[1],
                                        "gray_ciede2000": b[4], "truth_cci": gt_cci[-1]})
        if on_progress:
            on_progress(i + 1, len(files))
    if not model_rows:
        raise InputError(f"none of the {len(files)} images under {folder} could be read")
    return {
        "images": len(model_rows),
        "size": size,
        "model": _summarise(model_rows).as_dict(),
        "grayscale_baseline": _summarise(base_rows).as_dict(),
        "ground_truth_cci_mean": round(float(np.mean(gt_cci)), 4),
        "failed": failed,
    }


def _video_planes(path: Path) -> Iterable[tuple[float, np.ndarray, np.ndarray]]:
    """Yield (time s, luma in [0,1] at chroma resolution, 2 x h x w chroma in 8-bit code values)."""
    import av

    with open_input(path) as c:
        if not c.streams.video:
            raise InputError(f"no video stream in {path.name}")
        v = c.streams.video[0]
        tb = frac(v.time_base) or Fraction(1, 90000)
        try:
            for fr in c.decode(v):
                f, bits = working_format(fr)
                s = 2.0 ** (bits - 8)
                y = plane(f, 0).astype(np.float32) / s
                full, _, _ = source_colour(fr, fr.height)  # the range of the planes working_format gave
                y = y / 255 if full else (y - 16) / 219
                h, w = (y.shape[0] // 2) * 2, (y.shape[1] // 2) * 2
                y2 = y[:h, :w].reshape(h // 2, 2, w // 2, 2).mean((1, 3))
                uv = np.stack([plane(f, 1), plane(f, 2)]).astype(np.float32)[:, :h // 2, :w // 2] / s
                yield (float(fr.pts * tb) if fr.pts is not None else float("nan")), np.clip(y2, 0, 1), uv
        except av.error.FFmpegError as e:
            raise InputError(f"cannot decode {path.name}: {e}") from None


def colour_of(rgb: np.ndarray) -> dict[str, float]:
    """What a colorized picture (``H x W x 3`` uint8) shows without ground truth: its mean
    chroma (distance of BT.601 Cb/Cr from gray, 8-bit full-range code values; 0 is gray)
    and its colourfulness (Hasler & Suesstrunk, the CCI of ``evaluate``)."""
    x = rgb[..., :3].astype(np.float64)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    cci = colorfulness(torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None])))
    return {"mean chroma": float(np.sqrt(cb ** 2 + cr ** 2).mean()), "colourfulness": float(cci[0])}


def _frame_size(path: Path) -> tuple[int, int]:
    with open_input(path) as c:
        if not c.streams.video:
            raise InputError(f"no video stream in {path.name}")
        cc = c.streams.video[0].codec_context
        return int(cc.width), int(cc.height)


def _check_same_frame_size(src: Path, out: Path) -> None:
    """Refuse a pair of different pictures (a side-by-side copy, a rescaled file): their
    figures would be meaningless. The output may carry the one-pixel pad of 4:2:0."""
    (w, h), (wo, ho) = _frame_size(src), _frame_size(out)
    if wo not in (w, w + w % 2) or ho not in (h, h + h % 2):
        raise InputError(f"frame sizes differ: {src.name} is {w}x{h}, {out.name} is {wo}x{ho}; "
                         f"compare a video with its own colorized version")


def evaluate_video(src: str | os.PathLike[str], out: str | os.PathLike[str]) -> dict[str, object]:
    """Compare a colorized video with its source: frame count, timing, luma fidelity,
    colourfulness and flicker (see ``temporal.py`` for the flicker definition)."""
    from .temporal import chroma_flicker, is_scene_cut

    src, out = Path(src), Path(out)
    _check_same_frame_size(src, out)
    n = 0
    times_in: list[float] = []
    times_out: list[float] = []
    luma_se, luma_n = 0.0, 0
    flick = {"in": [0.0, 0], "out": [0.0, 0]}
    sat = 0.0
    cuts = 0
    prev: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    n_in = n_out = 0
    for a, b in zip_longest(_video_planes(src), _video_planes(out)):
        n_in += a is not None
        n_out += b is not None
        if a is None or b is None:
            continue
        (ti, yi, uvi), (to, yo, uvo) = a, b
        n += 1
        times_in.append(ti)
        times_out.append(to)
        h, w = yi.shape
        yo, uvo = yo[:h, :w], uvo[:, :h, :w]
        luma_se += float(((yi - yo) ** 2).sum())
        luma_n += yi.size
        sat += float(np.sqrt(((uvo - 128) ** 2).sum(0)).mean())
        for key, y, uv in (("in", yi, uvi), ("out", yo, uvo)):
            if key in prev:
                py, puv = prev[key]
                if key == "out" and is_scene_cut(torch.from_numpy(py)[None, None], torch.from_numpy(y)[None, None]):
                    cuts += 1  # a cut is not flicker
                else:
                    s, k = chroma_flicker(py, y, puv, uv)
                    flick[key][0] += s
                    flick[key][1] += k
            prev[key] = (y, uv)
    if n == 0:
        raise InputError(f"no comparable frames in {src.name} and {out.name}")
    if n_in != n_out:
        raise InputError(f"frame counts differ: {src.name} has {n_in} frames, {out.name} has {n_out}; "
                         f"compare a video with its own colorized version")
    mse = luma_se / max(luma_n, 1)
    dt = np.abs(np.array(times_in) - np.array(times_out))
    return {
        "frames_in": n_in, "frames_out": n_out,
        "max_timestamp_error_s": round(float(np.nanmax(dt)) if dt.size else 0.0, 6),
        "luma_psnr_db": round(float("inf") if mse == 0 else float(10 * np.log10(1 / mse)), 3),
        "mean_chroma": round(sat / n, 4),
        "flicker_out": round(flick["out"][0] / max(flick["out"][1], 1), 4),
        "flicker_in": round(flick["in"][0] / max(flick["in"][1], 1), 4),
        "static_pixel_share": round(flick["out"][1] / max(luma_n - h * w, 1), 4),
        "scene_cuts": cuts,
    }
