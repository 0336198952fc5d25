"""README tables and the GPU targets' verdicts from one ``gpu_check.json``.

    python scripts/gpu_tables.py gpu_check.json

Targets (the GPU data-path issue): the product path reaches >= 0.9x the bare forward at
batch >= 16 for both presets; the video model side of scgan-lite reaches >= 1000 frames/s
at 768x576 and >= 400 at 1080p; end to end reaches >= 0.9x min(model side, codec) with
x264 ultrafast. Each verdict is printed with the numbers behind it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

PATH_RATIO = 0.9
VIDEO_FPS = {"768x576": 1000.0, "1920x1080": 400.0}
E2E_RATIO = 0.9


def bench_table(rows: list[dict]) -> list[str]:
    out = ["| preset | batch | frame | compile | bare fps | backend fps (x) | video model side fps (x) | photos fps (x) |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def cell(key: str) -> str:
            v, x = r.get(f"{key}_fps"), r.get(f"{key}_ratio")
            return "error" if v is None else (f"{v} ({x})" if x is not None else f"{v}")
        out.append(f"| {r['preset']} | {r['batch']} | {r['frame']} | {'yes' if r['compile'] else 'no'} | "
                   f"{r.get('bare_fps')} | {cell('backend')} | {cell('video')} | "
                   f"{cell('photo') if 'photo_fps' in r else '-'} |")
    return out


def verdicts(rows: list[dict], videos: list[dict]) -> list[str]:
    out = []
    for r in rows:
        if r["batch"] >= 16 and r["frame"] == "256x256" and not r["compile"] and r.get("video_ratio") is not None:
            ok = r["video_ratio"] >= PATH_RATIO
            out.append(f"{'PASS' if ok else 'MISS'} product path {r['preset']} batch {r['batch']}: video model side "
                       f"{r['video_fps']} = {r['video_ratio']}x bare {r['bare_fps']} (target {PATH_RATIO}x)")
    for r in rows:
        need = VIDEO_FPS.get(r["frame"])
        if need and r["preset"] == "scgan-lite" and not r["compile"] and r.get("video_fps") is not None:
            out.append(f"{'PASS' if r['video_fps'] >= need else 'MISS'} video model side scgan-lite {r['frame']} "
                       f"batch {r['batch']}: {r['video_fps']} frames/s (target {need:g})")
    for v in videos:
        bound = min(v["model_fps"], v["codec_fps"])
        ratio = v["e2e_fps"] / bound if bound else 0.0
        out.append(f"{'PASS' if ratio >= E2E_RATIO else 'MISS'} end to end {Path(v['clip']).name} "
                   f"{v['width']}x{v['height']} ({v['preset']}): {v['e2e_fps']} frames/s = {ratio:.2f}x "
                   f"min(model {v['model_fps']}, codec {v['codec_fps']}) (target {E2E_RATIO}x)")
    return out


def main(path: str) -> None:
    rows = json.loads(Path(path).read_text())
    bench = [r for r in rows if "preset" in r and "bare_fps" in r]
    videos = [r for r in rows if r.get("step") == "benchmark-video"]
    print("\n".join(bench_table(bench)))
    print()
    for r in [r for r in rows if str(r.get("step", "")).startswith("benchmark-video")]:
        print(f"{r['step']} {Path(r['clip']).name} {r['width']}x{r['height']} batch {r['batch']} {r['preset']}: "
              f"model {r['model_fps']}, codec {r['codec_fps']}, end to end {r['e2e_fps']} frames/s")
    for r in rows:
        step = str(r.get("step", ""))
        if (step in ("photos", "torchrun", "export-int8", "build-engine-int8") or step.startswith("train")
                or step.startswith("benchmark-scgan") or step.startswith("benchmark-trt")):
            print(json.dumps(r))
    print()
    print("\n".join(verdicts(bench, videos)))


if __name__ == "__main__":
    main(sys.argv[1])
