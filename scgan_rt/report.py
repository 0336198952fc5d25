"""``--report``: a static HTML contact sheet of a run (no server, no external assets).

``OUT/report.html`` (and ``report_2.html``... past ``PAGE_ITEMS`` items) shows, per item,
input | output (| ground truth for ``evaluate``) thumbnails with status, size, seconds and
metrics; ``evaluate`` adds a CCI histogram and a PSNR/SSIM scatter against the grayscale
baseline as inline SVG; a video gets a strip of frames from its output and its flicker
(``evaluate-video``, beside the source's). Thumbnails are
JPEG files in ``OUT/report_files/`` loaded lazily, so a 10,000-item page stays light.
"""
from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .atomic import atomic_path
from .metrics import evaluate_video
from .pipeline import Job, Report
from .reading import is_video

PAGE_ITEMS = 200
THUMB = 256
STRIP_FRAMES = 4
FILES = "report_files"


@dataclass
class Item:
    name: str
    status: str  # done | failed | skipped
    source: Path | None = None
    output: Path | None = None
    detail: str = ""  # error message or skip reason
    seconds: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    pictures: dict[str, str] = field(default_factory=dict)  # label -> thumbnail file in FILES


class Sheet:
    """Collects items, writing each thumbnail as it comes (memory does not grow with them)."""

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir)
        self.files = self.out_dir / FILES
        self.files.mkdir(parents=True, exist_ok=True)
        self.items: list[Item] = []
        self._thumbs = 0

    def thumb(self, a: np.ndarray) -> str:
        """Save ``a`` (``H x W x 3``, float in [0, 1] or uint8) as a thumbnail; its file name."""
        self._thumbs += 1
        name = f"{self._thumbs:07d}.jpg"
        if a.dtype != np.uint8:
            a = np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)
        im = Image.fromarray(a)
        im.thumbnail((THUMB, THUMB))
        im.save(self.files / name, "JPEG", quality=85)
        return name

    def add_run(self, report: Report, jobs: Sequence[Job]) -> None:
        """The items of a ``colorize`` run, in job order."""
        done, failed = set(report.done), dict(report.failed)
        for job in jobs:
            if str(job.dst) in done:
                self.items.append(Item(job.src.name, "done", job.src, job.dst, metrics=_video_metrics(job),
                                       pictures=self._pictures(job.src, job.dst)))
            elif str(job.src) in failed:
                self.items.append(Item(job.src.name, "failed", job.src, None, failed[str(job.src)]))
            else:
                self.items.append(Item(job.src.name, "skipped", job.src, job.dst, "already done or colour"))

    def _pictures(self, src: Path, dst: Path) -> dict[str, str]:
        if is_video(src):
            return {f"frame {i + 1}": self.thumb(f) for i, f in enumerate(_video_frames(dst))}
        pics = {}
        for label, path in (("input", src), ("output", dst)):
            try:
                pics[label] = self.thumb(_thumb_of_file(path))
            except Exception:  # an unreadable thumbnail must not lose the report
                pass
        return pics

    def write(self, title: str, summary: dict[str, object] | None = None, charts: Sequence[str] = ()) -> Path:
        """Write the pages; returns the first page's path."""
        pages = max(1, -(-len(self.items) // PAGE_ITEMS))
        for p in range(pages):
            cards = "\n".join(_card(it) for it in self.items[p * PAGE_ITEMS:(p + 1) * PAGE_ITEMS])
            body = (f"<h1>{html.escape(title)}</h1>{_summary(summary)}{''.join(charts) if p == 0 else ''}"
                    f"{_nav(p, pages)}<div class='grid'>{cards}</div>{_nav(p, pages)}")
            with atomic_path(self.out_dir / _page_name(p)) as tmp:
                tmp.write_text(_PAGE.format(title=html.escape(title), body=body), encoding="utf-8")
        return self.out_dir / _page_name(0)


def _video_metrics(job: Job) -> dict[str, float]:
    """A film's flicker (``evaluate-video``) next to its source's, for its card."""
    if not is_video(job.src) or not job.dst.is_file():
        return {}
    try:
        ev = evaluate_video(job.src, job.dst)
    except Exception:  # a figure the report cannot compute must not lose the report
        return {}
    return {"flicker": float(ev["flicker_out"]), "source flicker": float(ev["flicker_in"]),
            "luma PSNR dB": float(ev["luma_psnr_db"])}


def _thumb_of_file(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        im.draft("RGB", (THUMB, THUMB))  # JPEG decodes at reduced size: cheap on big scans
        im = im.convert("RGB")
        im.thumbnail((THUMB, THUMB))
        return np.asarray(im)


def _video_frames(path: Path) -> list[np.ndarray]:
    import av

    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as c:
            v = c.streams.video[0]
            n = v.frames or 0
            step = max(1, n // STRIP_FRAMES) if n else 10
            for i, fr in enumerate(c.decode(v)):
                if i % step == 0:
                    im = fr.to_image()
                    im.thumbnail((THUMB, THUMB))
                    frames.append(np.asarray(im.convert("RGB")))
                if len(frames) >= STRIP_FRAMES:
                    break
    except Exception:
        pass
    return frames


def _card(it: Item) -> str:
    imgs = []
    for label, name in it.pictures.items():
        imgs.append(f"<figure><img loading='lazy' src='{FILES}/{name}' alt='{html.escape(label)}'>"
                    f"<figcaption>{html.escape(label)}</figcaption></figure>")
    facts = []
    if it.source is not None and it.source.is_file():
        facts.append(f"{it.source.stat().st_size / 1024:.0f} KiB")
    if it.seconds is not None:
        facts.append(f"{it.seconds:.2f} s")
    facts += [f"{k} {v:.4g}" for k, v in it.metrics.items()]
    detail = f"<p class='detail'>{html.escape(it.detail)}</p>" if it.detail else ""
    return (f"<div class='card {it.status}'><div class='pics'>{''.join(imgs)}</div>"
            f"<p><b>{html.escape(it.name)}</b> <span class='status'>{it.status}</span></p>"
            f"<p class='facts'>{html.escape(' · '.join(facts))}</p>{detail}</div>")


def _summary(summary: dict[str, object] | None) -> str:
    if not summary:
        return ""
    def text(v: object) -> str:
        if isinstance(v, dict):
            return ", ".join(f"{k} {x:.4g}" if isinstance(x, float) else f"{k} {x}" for k, x in v.items())
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(text(v))}</td></tr>"
                   for k, v in summary.items())
    return f"<table class='summary'>{rows}</table>"


def _page_name(p: int) -> str:
    return "report.html" if p == 0 else f"report_{p + 1}.html"


def _nav(p: int, pages: int) -> str:
    if pages == 1:
        return ""
    links = " ".join(f"<b>{k + 1}</b>" if k == p else f"<a href='{_page_name(k)}'>{k + 1}</a>" for k in range(pages))
    return f"<nav>page {links}</nav>"


def histogram_svg(values: Sequence[float], reference: Sequence[float], title: str, bins: int = 20) -> str:
    """Two overlaid histograms (model, ground truth) as inline SVG."""
    hi = max([*values, *reference, 1.0])
    edges = np.linspace(0, hi, bins + 1)
    a, _ = np.histogram(values, edges)
    b, _ = np.histogram(reference, edges)
    top = max(int(a.max(initial=0)), int(b.max(initial=0)), 1)
    w, h, bw = 400, 160, 400 / bins
    bars = []
    for counts, colour, off in ((b, "#bbb", 0.0), (a, "#d2691e", 0.25)):
        for i, c in enumerate(counts):
            bh = h * c / top
            bars.append(f"<rect x='{i * bw + off * bw:.1f}' y='{h - bh:.1f}' width='{bw * 0.7:.1f}' "
                        f"height='{bh:.1f}' fill='{colour}'/>")
    return _figure(title, w, h, "".join(bars), f"0 .. {hi:.0f}; orange: model, gray: ground truth")


def scatter_svg(points: Sequence[tuple[float, float]], title: str, x_label: str, y_label: str) -> str:
    """Points with the y = x line (above it: the model beats the grayscale baseline)."""
    xs = [p[0] for p in points] or [0.0]
    ys = [p[1] for p in points] or [0.0]
    lo, hi = min(xs + ys), max(xs + ys)
    span = (hi - lo) or 1.0
    w = h = 220

    def sx(v: float) -> float:
        return (v - lo) / span * w

    dots = "".join(f"<circle cx='{sx(x):.1f}' cy='{h - sx(y):.1f}' r='3' fill='#d2691e'/>" for x, y in points)
    line = f"<line x1='0' y1='{h}' x2='{w}' y2='0' stroke='#999'/>"
    return _figure(title, w, h, line + dots, f"x: {x_label}, y: {y_label}; {lo:.3g} .. {hi:.3g}")


def _figure(title: str, w: int, h: int, shapes: str, caption: str) -> str:
    return (f"<figure class='chart'><figcaption>{html.escape(title)}</figcaption>"
            f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' viewBox='0 0 {w} {h}'>"
            f"<rect width='{w}' height='{h}' fill='#fafafa'/>{shapes}</svg>"
            f"<figcaption class='detail'>{html.escape(caption)}</figcaption></figure>")


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 12px; }}
.card {{ border: 1px solid #ddd; border-radius: 6px; padding: 8px; max-width: 800px; }}
.card.failed {{ border-color: #c33; }} .card.failed .status {{ color: #c33; }}
.pics {{ display: flex; gap: 6px; }} figure {{ margin: 0; }} img {{ max-width: 256px; display: block; }}
figcaption, .facts, .detail {{ color: #666; font-size: 12px; }}
.chart {{ display: inline-block; margin: 0 1em 1em 0; }} table.summary th {{ text-align: left; padding-right: 1em; }}
</style></head><body>
{body}
</body></html>
"""
