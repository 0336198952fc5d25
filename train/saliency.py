"""Classical salient-OBJECT detector for saliency ground truth (no pretrained network
is available offline; the paper used PFAN and found object maps beat fixation maps, §I).

Method ("MB+"-style, after Zhang et al., "Minimum Barrier Salient Object Detection at
80 FPS", ICCV 2015):

1. Work at ~256 px on the colour photo in CIE Lab (colour contrast is strongest there).
2. **Minimum barrier distance** from the image border, per Lab channel, approximated with
   FastMBD-style directional scans: each pass relaxes every pixel from its neighbour in
   one direction, keeping the running max/min of the path (the "barrier"). Passes are
   vectorised along whole rows/columns, so a 256x256 map takes tens of milliseconds. The
   border is the background seed set: pixels that can only be reached from the border
   over a high barrier are salient.
3. **Backgroundness prior** (the "+" of MB+): Lab distance of each pixel to the mean
   colour of each of the four border strips, whitened by that strip's spread, taking the
   minimum over strips (a region that matches any border strip is background).
4. Product of the two (each normalised to [0,1]), a mild centre prior, Gaussian smoothing,
   and a sigmoid contrast stretch, then bilinear upsampling to the photo's size.

Maps are 8-bit single-channel PNGs in [0,255], mirroring the photo tree with a ``.png``
suffix; existing maps are reused (a cache), so they are computed once per dataset.
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from scgan_rt.atomic import atomic_path

from .data import list_images, map_path

WORK_SIZE = 256  # long side the detector runs at


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8/float[0,255] (H,W,3) -> CIE Lab (D65), float32."""
    c = rgb.astype(np.float32) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]], np.float32)
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883], np.float32)
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def _scan_down(img: np.ndarray, d: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> None:
    """One top-to-bottom relaxation pass (in place): each row from the row above."""
    for y in range(1, img.shape[0]):
        v = img[y]
        nhi = np.maximum(hi[y - 1], v)
        nlo = np.minimum(lo[y - 1], v)
        cand = nhi - nlo
        better = cand < d[y]
        d[y] = np.where(better, cand, d[y])
        hi[y] = np.where(better, nhi, hi[y])
        lo[y] = np.where(better, nlo, lo[y])


def minimum_barrier_distance(img: np.ndarray, passes: int = 3) -> np.ndarray:
    """Approximate MBD from the image border for a 2-D float image."""
    d = np.full(img.shape, np.inf, np.float32)
    d[0, :] = d[-1, :] = d[:, 0] = d[:, -1] = 0.0  # border pixels are background seeds
    hi, lo = img.copy(), img.copy()
    for _ in range(passes):
        # Down, up, right, left: flips/transposes are views, so the passes write through.
        for view in (lambda a: a, lambda a: a[::-1], lambda a: a.T, lambda a: a.T[::-1]):
            _scan_down(view(img), view(d), view(hi), view(lo))
    return d


def _norm(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo + 1e-8 else np.zeros_like(a)


def backgroundness(lab: np.ndarray, frac: float = 0.1) -> np.ndarray:
    """Min over the 4 border strips of the whitened Lab distance to the strip's mean."""
    h, w = lab.shape[:2]
    bh, bw = max(1, int(h * frac)), max(1, int(w * frac))
    strips = [lab[:bh].reshape(-1, 3), lab[-bh:].reshape(-1, 3), lab[:, :bw].reshape(-1, 3), lab[:, -bw:].reshape(-1, 3)]
    dists = []
    for s in strips:
        mu, sd = s.mean(0), s.std(0) + 5.0  # floor: flat borders must not explode the distance
        dists.append(np.sqrt((((lab - mu) / sd) ** 2).sum(-1)))
    return np.min(dists, 0)


def saliency_map(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) uint8 salient-object map."""
    h, w = rgb.shape[:2]
    s = WORK_SIZE / max(h, w)
    sh, sw = max(8, round(h * s)), max(8, round(w * s))
    small = np.asarray(Image.fromarray(rgb).resize((sw, sh), Image.BILINEAR)) if (sh, sw) != (h, w) else rgb
    lab = ndimage.gaussian_filter(rgb_to_lab(small), sigma=(1, 1, 0))  # suppress texture/noise
    mbd = sum(minimum_barrier_distance(np.ascontiguousarray(lab[..., c])) for c in range(3))
    sal = _norm(mbd) * _norm(backgroundness(lab))
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    centre = np.exp(-(((yy / sh - 0.5) ** 2) + ((xx / sw - 0.5) ** 2)) / (2 * 0.35 ** 2))
    sal = _norm(ndimage.gaussian_filter(_norm(sal) * (0.5 + 0.5 * centre), sigma=max(sh, sw) / 64))
    sal = 1.0 / (1.0 + np.exp(-10.0 * (sal - 0.4)))  # contrast stretch: objects high, background low
    out = Image.fromarray(np.clip(np.rint(_norm(sal) * 255), 0, 255).astype(np.uint8))
    return np.asarray(out.resize((w, h), Image.BILINEAR)) if (sh, sw) != (h, w) else np.asarray(out)


def _one(args: tuple[Path, Path]) -> str | None:
    src, dst = args
    try:
        with Image.open(src) as im:
            rgb = np.asarray(im.convert("RGB"))
        sal = saliency_map(rgb)
        with atomic_path(dst) as tmp:
            Image.fromarray(sal).save(tmp, format="PNG")
        return None
    except Exception as e:  # one bad photo must not stop a dataset-sized job
        return f"{src.name}: {e}"


def compute_saliency_maps(src_dir: Path, maps_dir: Path, files: list[Path] | None = None,
                          workers: int = 2, progress: bool = True) -> dict[str, int | list[str]]:
    """Compute maps for every photo under ``src_dir`` lacking one in ``maps_dir``."""
    src_dir, maps_dir = Path(src_dir), Path(maps_dir)
    rel = list_images(src_dir) if files is None else list(files)
    todo = [(src_dir / r, map_path(maps_dir, r)) for r in rel if not map_path(maps_dir, r).is_file()]
    errors: list[str] = []
    if todo:
        from rich.progress import Progress

        with Progress(transient=True, disable=not progress) as bar:
            task = bar.add_task("saliency maps", total=len(todo))
            if workers > 1 and len(todo) > 1:
                with ProcessPoolExecutor(workers) as ex:
                    for err in ex.map(_one, todo, chunksize=4):
                        errors += [err] if err else []
                        bar.advance(task)
            else:
                for t in todo:
                    err = _one(t)
                    errors += [err] if err else []
                    bar.advance(task)
    return {"total": len(rel), "computed": len(todo) - len(errors), "reused": len(rel) - len(todo), "failed": errors}
