"""Video benchmark and memory check behind the README's video tables.

    python scripts/video_benchmark.py speed  [--out runs/videobench] [--seconds 10]
    python scripts/video_benchmark.py memory [--out runs/videobench] --minutes 1 5 [--preset ultrafast]

``speed`` runs ``scgan-rt benchmark-video`` on the bundled clip and on a generated 1080p
clip. ``memory`` colorizes generated 1080p clips of several lengths, each in its own
process, and reports every run's peak RSS (flat memory = equal peaks).

Generated clips: gray 1920x1080 at 25 fps, slow pans across real photos (the bundled
samples, or ../shared/data/photos/train_512 when present) with a hard cut every 5 s and
mild grain, encoded once with libx264 (CRF 18, ultrafast) and cached under --out.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CLIP = ROOT / "scgan_rt" / "samples" / "video" / "carphone_gray.mp4"


def _photos() -> list[Path]:
    shared = ROOT.parent / "shared" / "data" / "photos" / "train_512"
    src = shared if shared.is_dir() else ROOT / "scgan_rt" / "samples" / "photos"
    return sorted(p for p in src.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:24]


def make_clip(path: Path, seconds: float, w: int = 1920, h: int = 1080, fps: int = 25) -> Path:
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    photos = _photos()
    rng = np.random.default_rng(0)
    n = int(seconds * fps)
    shot = 5 * fps
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.time_base = s.codec_context.time_base = Fraction(1, fps)
        s.options = {"crf": "18", "preset": "ultrafast"}
        base = None
        for i in range(n):
            if i % shot == 0:
                im = Image.open(photos[(i // shot) % len(photos)]).convert("L")
                scale = max((w + shot) / im.width, h / im.height)
                im = im.resize((int(im.width * scale) + 1, int(im.height * scale) + 1), Image.BICUBIC)
                base = np.asarray(im, dtype=np.float32)
            x = i % shot
            img = base[:h, x:x + w] + rng.normal(0, 2.0, (h, w)).astype(np.float32)
            f = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="gray")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    tmp.rename(path)
    return path


def speed(args: argparse.Namespace) -> None:
    clips = [SAMPLE_CLIP, make_clip(Path(args.out) / f"gen1080_{args.seconds}s.mp4", args.seconds)]
    rows = []
    for clip in clips:
        p = subprocess.run(["scgan-rt", "benchmark-video", str(clip), "--json", "--backend", args.backend,
                            "--preset", args.preset], capture_output=True, text=True)
        if p.returncode:
            sys.exit(p.stderr)
        rows.append(json.loads(p.stdout))
        print(json.dumps(rows[-1]), flush=True)
    Path(args.out, "speed.json").write_text(json.dumps(rows, indent=1))


def memory(args: argparse.Namespace) -> None:
    rows = []
    for minutes in args.minutes:
        clip = make_clip(Path(args.out) / f"gen1080_{int(minutes * 60)}s.mp4", minutes * 60)
        out = Path(args.out) / f"out_{int(minutes * 60)}s.mp4"
        t0 = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        p = subprocess.run(["scgan-rt", "colorize", str(clip), "-o", str(out), "--overwrite", "--json",
                            "--backend", args.backend, "--preset", args.preset], capture_output=True, text=True)
        if p.returncode:
            sys.exit(p.stderr)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        # RUSAGE_CHILDREN is the largest child so far; runs go shortest first, so a larger
        # later peak is that run's own.
        summary = json.loads(p.stdout)
        rows.append({"minutes": minutes, "frames": summary["video_frames"], "fps": summary["video_fps"],
                     "seconds": round(time.perf_counter() - t0, 1), "peak_rss_mb": round(peak / 1024, 1),
                     "peak_grew": peak > before})
        print(json.dumps(rows[-1]), flush=True)
    Path(args.out, "memory.json").write_text(json.dumps(rows, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["speed", "memory"])
    ap.add_argument("--out", default="runs/videobench")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 5])
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--preset", default="medium")
    args = ap.parse_args()
    speed(args) if args.mode == "speed" else memory(args)


if __name__ == "__main__":
    main()
