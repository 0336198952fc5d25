"""``--report``: a static HTML contact sheet (no server, no external assets).

``colorize --report`` (and ``status OUT --report``) describes the **output folder**, not the
last invocation: the cards come from its journal(s), every item any run or shard finished,
with input | output thumbnails, failures with their reasons, and what needs no ground truth
(the output's dimensions, size, seconds, mean chroma and colourfulness, measured on the
output reduced to at most ``METRIC_SIDE`` pixels). A rerun reuses the thumbnails and figures
of unchanged outputs (``report_files/cards.json``), so it is cheap and never loses a card.
Runs without a journal (outputs beside their inputs) get a sheet of that run.
``evaluate --report`` adds gray | model | truth, a CCI histogram and a PSNR/SSIM scatter as
inline SVG. ``report.html`` holds ``PAGE_ITEMS`` cards (``report_2.html``... the rest);
thumbnails are JPEG files in ``report_files/`` loaded lazily, so a 10,000-item page stays light.
"""
from __future__ import annotations

import hashlib
import html
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .atomic import atomic_path
from .journal import History, status
from .metrics import colour_of, evaluate_video
from .pipeline import Job, Report
from .reading import is_video

PAGE_ITEMS = 200
THUMB = 256
METRIC_SIDE = 1024
STRIP_FRAMES = 4
FILES = "report_files"
CARDS = "cards.json"  # figures and thumbnails per output, reused while the output is unchanged
COLOUR_SKIP = "already in colour"


@dataclass
class Item:
    name: str
    status: str  # done | failed | skipped (the card's colour)
    source: Path | None = None
    output: Path | None = None
    detail: str = ""  # error message or skip reason
    seconds: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    pictures: dict[str, str] = field(default_factory=dict)  # label -> thumbnail file in FILES
    label: str = ""  # what the card says ("done earlier", "skipped: already colour"); default: status
    facts: list[str] = field(default_factory=list)  # dimensions, size


class Sheet:
    """Collects items, writing each thumbnail as it comes (memory does not grow with them)."""

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir)
        self.files = self.out_dir / FILES
        self.files.mkdir(parents=True, exist_ok=True)
        self.items: list[Item] = []
        self._thumbs = 0

    def thumb(self, a: np.ndarray, key: str | None = None) -> str:
        """Save ``a`` (``H x W x 3``, float in [0, 1] or uint8) as a thumbnail; its file name
        (``key``.jpg when given, else a running number)."""
        self._thumbs += 1
        name = f"{key}.jpg" if key else f"{self._thumbs:07d}.jpg"
        if a.dtype != np.uint8:
            a = np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)
        im = Image.fromarray(a)
        im.thumbnail((THUMB, THUMB))
        with atomic_path(self.files / name) as tmp:
            im.save(tmp, "JPEG", quality=85)
        return name

    def add_run(self, report: Report, jobs: Sequence[Job]) -> None:
        """The items of a ``colorize`` run without a journal, in job order."""
        done, failed, before = set(report.done), dict(report.failed), dict(report.failed_before)
        colour = set(report.skipped_color)
        for job in jobs:
            src = str(job.src)
            if src in failed or src in before:
                label = "failed" if src in failed else "failed earlier (not retried)"
                self.items.append(Item(job.src.name, "failed", job.src, None, failed.get(src) or before[src],
                                       label=label))
            elif src in colour:
                self.items.append(Item(job.src.name, "skipped", job.src, job.dst, label="skipped: already colour"))
            elif job.dst.is_file():
                card = self._card_of(job.src, job.dst)
                self.items.append(Item(job.src.name, "done", job.src, job.dst, metrics=card["metrics"],
                                       pictures=card["pictures"], facts=card["facts"],
                                       label="done" if str(job.dst) in done else "done earlier"))
            else:
                self.items.append(Item(job.src.name, "skipped", job.src, job.dst, label="not done"))

    def add_folder(self, root: Path, since: float | None = None) -> History:
        """Every item the journals of ``root`` know (all runs and shards), by input path; what
        was finished before ``since`` (default: before its journal's latest run) is "earlier"."""
        hist = History.read(root)
        started = {run["journal"]: run.get("time", 0) for run in hist.runs}  # each journal's latest run
        cache = _Cards(self.files / CARDS)
        for rel in sorted(hist.items):
            rec = hist.items[rel]
            earlier = rec.get("time", 0) < (since if since is not None else started.get(rec["journal"], 0))
            self.items.append(self._journal_item(root, rec, earlier, cache))
        cache.save()
        return hist

    def _journal_item(self, root: Path, rec: dict[str, Any], earlier: bool, cache: "_Cards") -> Item:
        src = Path(rec["source"]) if rec.get("source") else None
        name = rec["input"]
        if rec.get("status") == "failed":
            return Item(name, "failed", src, detail=rec.get("reason", ""), label="failed earlier" if earlier else "")
        if rec.get("status") != "done":
            reason = rec.get("reason") or "skipped"
            label = "skipped: already colour" if reason == COLOUR_SKIP else f"skipped: {reason}"
            return Item(name, "skipped", src, label=label)
        out = root / rec["output"] if rec.get("output") else None
        label = "done earlier" if earlier else "done"
        if out is None or not out.is_file():
            return Item(name, "failed", src, out, "its output is gone (deleted or moved since)", rec.get("seconds"))
        card = cache.get(out, lambda: self._card_of(src, out))
        return Item(name, "done", src, out, seconds=rec.get("seconds"), metrics=card["metrics"],
                    pictures=card["pictures"], label=label, facts=card["facts"])

    def _card_of(self, src: Path | None, out: Path) -> dict[str, Any]:
        """Thumbnails, dimensions, size and figures of one output (cached by ``_Cards``)."""
        st = out.stat()
        key = hashlib.sha1(f"{out.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
        facts = [_dimensions(out), _file_size(st.st_size)]
        if is_video(out):
            metrics = _video_metrics(Job(src, out)) if src is not None and src.is_file() else {}
            pics = {f"frame {i + 1}": self.thumb(f, f"{key}-f{i}") for i, f in enumerate(_video_frames(out))}
            return {"metrics": metrics, "pictures": pics, "facts": [f for f in facts if f]}
        pics = {}
        for label, path in (("input", src), ("output", out)):
            if path is not None and path.is_file():
                try:
                    pics[label] = self.thumb(_thumb_of_file(path), f"{key}-{label}")
                except Exception:  # an unreadable thumbnail must not lose the report
                    pass
        try:
            metrics = colour_of(_thumb_of_file(out, METRIC_SIDE))
        except Exception:
            metrics = {}
        return {"metrics": metrics, "pictures": pics, "facts": [f for f in facts if f]}

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


class _Cards:
    """``cards.json``: an output's card while the output (size, mtime) and its thumbnails stay."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.cards: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.cards = {}

    def get(self, out: Path, make: Any) -> dict[str, Any]:
        st = out.stat()
        ident = [st.st_size, st.st_mtime_ns]
        card = self.cards.get(str(out.resolve()))
        if (card is None or card.get("ident") != ident
                or not all((self.path.parent / n).is_file() for n in card["pictures"].values())):
            card = make() | {"ident": ident}
            self.cards[str(out.resolve())] = card
        return card

    def save(self) -> None:
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.cards), encoding="utf-8")


def folder_report(root: Path, since: float | None = None) -> Path:
    """``report.html`` of an output folder from its journal(s); returns its path. ``since``:
    when the run that writes it started (what was finished before is "earlier")."""
    sheet = Sheet(root)
    hist = sheet.add_folder(root, since)
    s = status(root)
    earlier = sum(it.label == "done earlier" for it in sheet.items)
    summary: dict[str, object] = {
        "Output folder": str(root), "Planned": s["planned"],
        "Done": f"{s['done']} ({s['done'] - earlier} in the latest run, {earlier} earlier)",
        "Failed": len(s["failed"]), "Still to do": s["pending"]}
    for reason, n in s["skipped"].items():
        summary[f"Skipped: {'already colour' if reason == COLOUR_SKIP else reason}"] = n
    last = hist.runs[-1] if hist.runs else {}
    summary.update({"Runs": f"{len(hist.runs)} ({len(s['journals'])} journal(s))",
                    "Throughput": f"{s['items_per_s']:.2f} items/s",
                    "Model": last.get("model", ""), "Backend": last.get("backend", "")})
    return sheet.write(f"scgan-rt colorize: {s['done']} of {s['planned']} done in {root.name}", summary)


def run_summary(rep: Report) -> dict[str, object]:
    """A journal-less run in human words, for its sheet."""
    d: dict[str, object] = {"Written": len(rep.done), "Done earlier": len(rep.skipped_existing),
                            "Skipped: already colour": len(rep.skipped_color), "Failed": len(rep.failed),
                            "Failed earlier (not retried)": len(rep.failed_before),
                            "Films waiting for other shards": len(rep.films_pending),
                            "Seconds": round(rep.seconds, 1), "Files per second": round(rep.images_per_s, 3),
                            "Backend": rep.backend, "Photos per network call": rep.photo_batch,
                            "Compile seconds": round(rep.compile_seconds, 1)}
    if rep.frames:
        d["Video frames"] = rep.frames
        d["Video frames per second"] = round(rep.frames / rep.video_seconds, 1) if rep.video_seconds else "-"
    return {k: v for k, v in d.items() if v not in (0, 0.0, "")}


def _dimensions(path: Path) -> str:
    try:
        if is_video(path):
            import av

            with av.open(str(path)) as c:
                v = c.streams.video[0]
                return f"{v.codec_context.width}x{v.codec_context.height}, {v.frames or '?'} frames"
        with Image.open(path) as im:
            return f"{im.size[0]}x{im.size[1]}"
    except Exception:
        return ""


def _file_size(n: int) -> str:
    return f"{n / 1024:.0f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def _video_metrics(job: Job) -> dict[str, float]:
    """A film's flicker (``evaluate-video``) next to its source's, for its card."""
    if not is_video(job.src) or not job.dst.is_file():
        return {}
    try:
        ev = evaluate_video(job.src, job.dst)
    except Exception:  # a figure the report cannot compute must not lose the report
        return {}
    return {"mean chroma": float(ev["mean_chroma"]), "flicker": float(ev["flicker_out"]),
            "source flicker": float(ev["flicker_in"]), "luma PSNR dB": float(ev["luma_psnr_db"])}


def _thumb_of_file(path: Path, side: int = THUMB) -> np.ndarray:
    with Image.open(path) as im:
        im.draft("RGB", (side, side))  # JPEG decodes at reduced size: cheap on big scans
        im = im.convert("RGB")
        im.thumbnail((side, side))
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
    facts = list(it.facts)
    if not facts and it.source is not None and it.source.is_file():
        facts.append(_file_size(it.source.stat().st_size))
    if it.seconds is not None:
        facts.append(f"{it.seconds:.2f} s")
    facts += [f"{k} {v:.4g}" for k, v in it.metrics.items()]
    detail = f"<p class='detail'>{html.escape(it.detail)}</p>" if it.detail else ""
    return (f"<div class='card {it.status}'><div class='pics'>{''.join(imgs)}</div>"
            f"<p><b>{html.escape(it.name)}</b> <span class='status'>{html.escape(it.label or it.status)}</span></p>"
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
