"""Measure films in segments against one piece (README "Large jobs").

Generates a 2-minute 192x128 clip (real photos as shots, a cut every 5 s, noisy frames,
AAC audio), then: (1) one piece; (2) segments of 30 s, interrupted with Ctrl-C at about
half the film and rerun. Prints wall time, frames encoded, flicker (``evaluate-video``),
flicker at the seams only, and whether frame count/pts/audio match the one-piece output.

    python scripts/film_segments_bench.py [--workdir DIR] [--backend torch]
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from clips import noisy_still, write_clip  # noqa: E402


def make_film(path: Path) -> Path:
    photos = sorted((ROOT / "scgan_rt" / "samples" / "photos").glob("*.jpg"))
    frames = []
    for k in range(24):  # 24 shots of 5 s = 120 s at 25 fps
        frames += noisy_still(photos[k % len(photos)], n=125, w=192, h=128, seed=k)
    return write_clip(path, frames, audio="aac", options={"preset": "veryfast"})


def run(args: list[str], interrupt_after: float | None = None) -> tuple[float, dict | None]:
    t0 = time.perf_counter()
    # SIGINT back to its default: a shell's background job would otherwise pass it on ignored.
    p = subprocess.Popen([sys.executable, "-m", "scgan_rt", "colorize", *args, "--json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    if interrupt_after is not None:
        time.sleep(interrupt_after)
        p.send_signal(signal.SIGINT)
    out, err = p.communicate()
    return time.perf_counter() - t0, (json.loads(out) if p.returncode == 0 else None)


def streams(path: Path):
    with av.open(str(path)) as c:
        v = sorted(p.pts for p in c.demux(c.streams.video[0]) if p.size)
    with av.open(str(path)) as c:
        a = [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]
    return v, a


def seam_flicker(src: Path, out: Path, seams: list[int]) -> float:
    """Mean chroma change on static pixels between the frames either side of each seam."""
    from scgan_rt.metrics import _video_planes
    from scgan_rt.temporal import chroma_flicker

    want = {s - 1 for s in seams} | set(seams)
    planes = {i: (y, uv) for i, (_, y, uv) in enumerate(_video_planes(out)) if i in want}
    total = n = 0.0
    for s in seams:
        (y0, uv0), (y1, uv1) = planes[s - 1], planes[s]
        d, k = chroma_flicker(y0, y1, uv0, uv1)
        total, n = total + d, n + k
    return total / max(n, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/scgan-film-bench"))
    ap.add_argument("--backend", default="torch")
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    film = a.workdir / "film.mp4"
    if not film.exists():
        make_film(film)
    common = ["--backend", a.backend, "--device", "cpu"]
    one, one_json = a.workdir / "one.mp4", a.workdir / "one.json"
    if one_json.exists() and one.exists():  # the one-piece reference is reused between runs
        t_one, r_one = json.loads(one_json.read_text())
    else:
        one.unlink(missing_ok=True)
        t_one, r_one = run([str(film), "-o", str(one), "--segment-seconds", "0", *common])
        one_json.write_text(json.dumps([t_one, r_one]))
    seg = a.workdir / "seg.mp4"
    seg.unlink(missing_ok=True)
    t_cut, _ = run([str(film), "-o", str(seg), "--segment-seconds", "30", *common], interrupt_after=t_one / 2)
    work = a.workdir / ".seg.mp4.segments"
    done_frames = sum(json.loads(p.read_text())["frames"] for p in work.glob("seg*.done"))
    done = len(list(work.glob("seg*.done")))
    plan = (work / "plan.json").exists()
    t_rest, r_seg = run([str(film), "-o", str(seg), "--segment-seconds", "30", *common])
    from scgan_rt.reading import probe_video
    from scgan_rt.segments import plan_segments
    from scgan_rt.settings import InferConfig

    info = probe_video(film)
    step = round(1 / (info.rate * info.time_base))
    seams = [s // step for s, _ in plan_segments(film, info, InferConfig(segment_seconds=30))[1:]]
    ev = {}
    for name, path in (("one", one), ("seg", seg)):
        r = subprocess.run([sys.executable, "-m", "scgan_rt", "evaluate-video", str(film), str(path), "--json"],
                           capture_output=True, text=True, check=True)
        ev[name] = json.loads(r.stdout)["flicker_out"]
    res = {
        "one_piece_s": round(t_one, 1), "one_piece_frames": r_one["video_frames"],
        "interrupted_after_s": round(t_cut, 1), "segments_done_before_ctrl_c": done,
        "rerun_s": round(t_rest, 1), "rerun_frames_encoded": r_seg["video_frames"],
        "frames_encoded_total_vs_clip": round((r_seg["video_frames"] + done_frames) / r_one["video_frames"], 3),
        "seams_at_frame": seams, "flicker_one_piece": ev["one"], "flicker_segments": ev["seg"],
        "seam_flicker_one_piece": round(seam_flicker(film, one, seams), 4),
        "seam_flicker_segments": round(seam_flicker(film, seg, seams), 4),
        "pts_and_audio_equal": streams(one) == streams(seg), "plan_cached_for_rerun": plan,
    }
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
