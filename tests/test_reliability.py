"""Fault cases found by running the tool as a new user would: colliding outputs, items
that do not fit in memory, exit codes of user errors, containers that cannot hold a
stream, signals at random times, and the smaller surprises."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from clips import noisy_still, write_clip
from conftest import PHOTOS, default_sigint, outputs, sha
from scgan_rt.cli import app
from scgan_rt.errors import EXIT_BAD_INPUT, EXIT_BAD_MODEL, EXIT_PARTIAL, EXIT_RESOURCE, EXIT_USAGE

COFFEE = PHOTOS / "skimage__coffee.jpg"


def _run(runner, *args):
    r = runner.invoke(app, ["colorize", *map(str, args), "--json"])
    return r, (json.loads(r.stdout[r.stdout.index("{"):]) if "{" in r.stdout else None)


def _cli(args, timeout=300, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "scgan_rt", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, **kw)


def test_same_names_from_two_folders_are_both_kept(runner, tmp_path, tiny_weights):
    for d in ("d1", "d2"):
        (tmp_path / d).mkdir()
        shutil.copy(COFFEE if d == "d1" else PHOTOS / "skimage__chelsea.jpg", tmp_path / d / "x.jpg")
    r, rep = _run(runner, tmp_path / "d1" / "x.jpg", tmp_path / "d2" / "x.jpg", "-o", tmp_path / "out",
                  "--model", tiny_weights)
    assert r.exit_code == 0, r.output
    assert rep["done"] == 2
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.jpg")) == \
        ["d1/x.jpg", "d2/x.jpg"]


def test_clashing_stems_in_one_folder_keep_the_source_extension(runner, tmp_path, tiny_weights):
    src = tmp_path / "in"
    src.mkdir()
    Image.open(COFFEE).convert("L").resize((64, 48)).save(src / "pic.png")
    Image.open(COFFEE).convert("L").resize((64, 48)).save(src / "pic.gif")
    for name in ("clip.mov", "clip.mp4"):
        write_clip(src / name, noisy_still(COFFEE, n=3, w=64, h=48))
    before = {p.name: sha(p) for p in src.iterdir()}
    for overwrite in ([], ["--overwrite"]):
        r, rep = _run(runner, src, "-o", tmp_path / "out", "--model", tiny_weights, *overwrite)
        assert r.exit_code == 0, r.output
        assert rep["done"] == 4 if overwrite or rep["skipped_existing"] == 0 else rep["skipped_existing"] == 4
    assert sorted(p.name for p in outputs(tmp_path / "out")) == ["clip.mov.mp4", "clip.mp4", "pic.gif.png", "pic.png"]
    assert {p.name: sha(p) for p in src.iterdir()} == before


def test_output_folder_equal_to_the_input_is_named(runner, tmp_path, tiny_weights):
    (tmp_path / "in").mkdir()
    shutil.copy(COFFEE, tmp_path / "in" / "a.jpg")
    r, _ = _run(runner, tmp_path / "in", "-o", tmp_path / "in", "--model", tiny_weights)
    assert r.exit_code == EXIT_USAGE and "output folder is the input folder" in r.output


@pytest.mark.parametrize("side", ["chroma_batch", "merge"])
def test_an_item_out_of_memory_fails_alone(runner, tmp_path, tiny_weights, monkeypatch, side):
    """Out of memory in the network's batch (retried photo by photo) or in one photo's
    full-resolution merge (in a writer thread): only that photo fails."""
    from scgan_rt.colorizer import Colorizer

    src = tmp_path / "in"
    src.mkdir()
    for name in ("a", "b", "huge", "d"):
        shutil.copy(COFFEE, src / f"{name}.jpg")
    real = getattr(Colorizer, side)

    def tight(self, first, *args, **kwargs):
        if any(im.path.name == "huge.jpg" for im in (first if side == "chroma_batch" else [first])):
            raise MemoryError
        return real(self, first, *args, **kwargs)

    monkeypatch.setattr(Colorizer, side, tight)
    r, rep = _run(runner, src, "-o", tmp_path / "out", "--model", tiny_weights, "--batch-size", "4")
    assert r.exit_code == EXIT_PARTIAL, r.output
    assert rep["done"] == 3 and [f["path"] for f in rep["failed"]] == [str(src / "huge.jpg")]
    assert "out of memory colorizing huge.jpg" in rep["failed"][0]["error"]
    r, rep = _run(runner, src / "huge.jpg", "-o", tmp_path / "o2", "--model", tiny_weights)
    assert r.exit_code == EXIT_RESOURCE  # nothing succeeded and the only failure was memory


def test_pixel_limit_comes_from_available_memory(monkeypatch):
    import psutil

    from scgan_rt import images

    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("M", (), {"available": 2 ** 30})())
    limit, why = images.pixel_limit(178_956_970)
    assert limit == 2 ** 30 // images.PEAK_BYTES_PER_PIXEL and "1.0 GiB of memory available" in why


def test_strip_merge_equals_the_whole_picture_merge_within_one_code_value():
    from scgan_rt.color import merge_luminance
    from scgan_rt.colorizer import merge_strips

    rng = np.random.default_rng(0)
    y = rng.random((1301, 517), dtype=np.float32)
    c = torch.from_numpy(rng.random((1, 2, 256, 256), dtype=np.float32) - 0.5) * 0.6
    ref = merge_luminance(torch.from_numpy(y)[None, None], c)[0].permute(1, 2, 0).numpy()
    assert np.abs(merge_strips(torch.from_numpy(y), c, np.float32) - ref).max() < 1e-4
    assert np.abs(merge_strips(torch.from_numpy(y), c, np.uint8).astype(float) - np.round(ref * 255)).max() <= 1
    assert np.abs(merge_strips(torch.from_numpy(y), c, np.uint16).astype(float) - np.round(ref * 65535)).max() <= 8


def test_nan_weights_are_a_model_error_naming_the_file(runner, tmp_path):
    from scgan_rt.config import preset
    from scgan_rt.model import build_generator
    from scgan_rt.weights import save_weights

    g = build_generator(preset("scgan-lite", width=1 / 16), seed=0)
    with torch.no_grad():
        for p in g.parameters():
            p.fill_(float("nan"))
    w = save_weights(tmp_path / "broken.safetensors", g.eval())
    r, _ = _run(runner, COFFEE, "-o", tmp_path / "o.png", "--model", w, "--backend", "torch")
    assert r.exit_code == EXIT_BAD_MODEL and "broken.safetensors" in r.output


def test_pickled_code_as_gfn_weights_is_one_line_exit_4(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Evil()))
    data = tmp_path / "data"
    data.mkdir()
    for f in sorted(PHOTOS.glob("*.jpg"))[:2]:
        Image.open(f).resize((300, 300)).save(data / f.name)
    r = _cli(["train", "--data", data, "--out", tmp_path / "run", "--preset", "scgan-lite", "--batch-size", "2",
              "--gfn-weights", tmp_path / "evil.pt", "--max-steps", "1", "--workers", "0", "--no-perceptual"])
    assert r.returncode == EXIT_BAD_MODEL, r.stderr
    assert "pickled code" in r.stderr and len(r.stderr.strip().splitlines()[-1]) > 0 and "pwned" not in r.stdout
    assert "Traceback" not in r.stderr


def test_checkpoint_onto_a_full_disk_is_exit_5(tmp_path):
    import resource

    from train_helpers import photo_dir

    data = photo_dir(tmp_path / "data", size=260)

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))

    r = _cli(["train", "--data", data, "--out", tmp_path / "run", "--preset", "scgan-lite", "--batch-size", "2",
              "--max-steps", "1", "--workers", "0", "--no-perceptual", "--sample-every", "1000"], preexec_fn=limit)
    assert r.returncode == EXIT_RESOURCE, r.stderr
    assert "disk full writing" in r.stderr and "last.pt" in r.stderr and "Traceback" not in r.stderr
    assert not list((tmp_path / "run").glob(".*partial*"))


@pytest.mark.parametrize("out_name,codec", [("o.mp4", "aac"), ("o.mkv", "pcm_s16le")])
def test_pcm_audio_into_mp4_becomes_aac_up_front_and_mkv_keeps_it(runner, tmp_path, tiny_weights, out_name, codec):
    src = write_clip(tmp_path / "in.avi", noisy_still(COFFEE, n=6, w=64, h=48), codec="mpeg4", audio="pcm_s16le")
    r, rep = _run(runner, src, "-o", tmp_path / out_name, "--model", tiny_weights)
    assert r.exit_code == 0, r.output
    with av.open(str(tmp_path / out_name)) as c:
        assert c.streams.audio[0].codec_context.name == codec
    assert any("re-encoded to AAC" in w for w in rep["warnings"]) == (codec == "aac")


def test_smaller_surprises(runner, tmp_path, tiny_weights):
    """VFR without a frame count is not 'truncated'; interlaced and animated inputs warn;
    an audio file says it has no video stream."""
    pts = [i * 40 if i < 16 else 640 + (i - 16) * 80 for i in range(32)]
    vfr = write_clip(tmp_path / "vfr.mkv", noisy_still(COFFEE, n=32, w=64, h=48), pts=pts)
    tff = write_clip(tmp_path / "tff.mp4", noisy_still(COFFEE, n=4, w=64, h=48),
                     options={"flags": "+ilme+ildct", "x264-params": "tff=1"})
    frames = [Image.fromarray(f) for f in noisy_still(COFFEE, n=3, w=64, h=48)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    shutil.copy(tmp_path / "vfr.mkv", tmp_path / "sound.m4a")
    with av.open(str(tmp_path / "sound.m4a"), "w", format="ipod") as c:
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
        for p in a.encode(None):
            c.mux(p)
    r, rep = _run(runner, vfr, tff, tmp_path / "anim.gif", tmp_path / "sound.m4a", "-o", tmp_path / "out",
                  "--model", tiny_weights)
    assert r.exit_code == EXIT_PARTIAL, r.output
    warnings = "\n".join(rep["warnings"])
    assert "truncated" not in warnings
    assert "tff.mp4: interlaced source" in warnings
    assert "anim.gif: animated GIF: only the first of 3 frames" in warnings
    assert rep["failed"] == [{"path": str(tmp_path / "sound.m4a"), "error": "no video stream in sound.m4a (an audio file)"}]


def test_stale_partials_and_empty_outputs_are_redone(runner, tmp_path, tiny_weights):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".a.jpg.x1y2.partial.jpg").write_bytes(b"half")
    (out / "a.jpg").write_bytes(b"")
    (out / ".other.jpg.zz.partial.jpg").write_bytes(b"someone else's")
    shutil.copy(COFFEE, tmp_path / "a.jpg")
    r, rep = _run(runner, tmp_path / "a.jpg", "-o", out / "a.jpg", "--model", tiny_weights)
    assert r.exit_code == 0, r.output
    assert rep["done"] == 1 and (out / "a.jpg").stat().st_size > 1000
    assert sorted(p.name for p in out.iterdir()) == [".other.jpg.zz.partial.jpg", "a.jpg"]
    assert any("existing output is empty" in w for w in rep["warnings"])


def test_signals_at_random_times_exit_cleanly(tmp_path, tiny_weights):
    """20 signals (SIGINT and SIGTERM, torch and onnxruntime) at random moments of a
    long clip: every run exits 130/143 at once and leaves no file behind."""
    src = write_clip(tmp_path / "long.mp4", noisy_still(COFFEE, n=1500, w=160, h=120),
                     options={"preset": "ultrafast"})
    rng = random.Random(0)
    cases = [(sig, be, rng.uniform(0.3, 6.0)) for sig in (signal.SIGINT, signal.SIGTERM)
             for be in ("torch", "onnxruntime") for _ in range(5)]
    env = dict(os.environ, PYTHONUNBUFFERED="1", SCGAN_RT_CACHE=str(tmp_path / "cache"))
    failures = []
    for k in range(0, len(cases), 4):  # four at a time on two cores
        running = []
        for i, (sig, be, delay) in enumerate(cases[k:k + 4]):
            out = tmp_path / f"out{k + i}"
            p = subprocess.Popen([sys.executable, "-m", "scgan_rt", "colorize", str(src), "-o", str(out),
                                  "--model", str(tiny_weights), "--backend", be, "--device", "cpu"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                 preexec_fn=default_sigint)
            running.append((p, sig, be, delay, out, time.monotonic()))
        for p, sig, be, delay, out, t0 in running:
            time.sleep(max(0.0, t0 + delay - time.monotonic()))
            p.send_signal(sig)
        for p, sig, be, delay, out, t0 in running:
            try:
                _, err = p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
                failures.append(f"{be} {sig.name} after {delay:.2f}s: still running 60 s later")
                continue
            want = 130 if sig == signal.SIGINT else 143
            left = [f.name for f in outputs(out)]
            if p.returncode != want or left or "Traceback" in err:
                failures.append(f"{be} {sig.name} after {delay:.2f}s: {p.returncode}, left {left}, {err[-300:]}")
    assert not failures, failures


@pytest.mark.parametrize("sig,code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_while_typer_builds_the_command_exits_cleanly(sig, code):
    """The window between start-up and the command's own error handling (seen under load:
    a traceback and -2 instead of 130)."""
    prog = (f"import signal, scgan_rt.cli as cli, scgan_rt.errors as e\n"
            f"def app():\n"
            f"    e.note_signal(signal.{sig})\n"
            f"    raise e.Terminated() if signal.{sig} == signal.SIGTERM else KeyboardInterrupt()\n"
            f"cli.app = app\n"
            f"cli.run()\n")
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=120)
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr and ("terminated" if code == 143 else "interrupted") in r.stderr


def test_an_interrupt_while_the_video_threads_start_still_joins_them(monkeypatch):
    """The signal handler raises in the main thread at any bytecode: landing between two
    thread starts, it used to leave the decoder running on a container being closed (a
    segfault, seen once in 8 interrupted films)."""
    import threading
    import time as _time

    from scgan_rt.video import _Pipe, _VideoJob

    import types

    job = types.SimpleNamespace(pipe=_Pipe())
    running = threading.Event()

    def decode(inp):
        running.set()
        while not job.pipe.stop.is_set():
            _time.sleep(0.01)
        _time.sleep(0.2)  # still touching the container for a while after the flag

    job._decode, job._infer, job._encode = decode, lambda: None, lambda out: None
    real_run = _Pipe.run

    def run_then_interrupt(self, fn):
        t = real_run(self, fn)
        running.wait(5)
        raise KeyboardInterrupt

    monkeypatch.setattr(_Pipe, "run", run_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        _VideoJob._run_threads(job, None, None)  # type: ignore[arg-type]
    assert job.pipe.threads and not any(t.is_alive() for t in job.pipe.threads)


def test_deinterlace_merges_the_fields_and_keeps_every_frame_and_timestamp(runner, tmp_path, tiny_weights):
    from clips import decode_planes

    # Moving vertical bars: the two fields of each frame differ, so combing is visible.
    frames = []
    for k in range(12):
        img = np.zeros((64, 96, 3), np.uint8)
        for x0 in range(0, 96, 16):
            img[:, (x0 + 3 * k) % 96:(x0 + 3 * k) % 96 + 8] = 220
        img[1::2] = np.roll(img[1::2], 2, axis=1)  # the later field has moved on
        frames.append(img)
    src = write_clip(tmp_path / "tff.mp4", frames, options={"flags": "+ilme+ildct", "x264-params": "tff=1",
                                                           "crf": "0"})
    outs = {}
    for flag in ([], ["--deinterlace"]):
        dst = tmp_path / f"out{len(flag)}.mp4"
        r, rep = _run(runner, src, "-o", dst, "--model", tiny_weights, "--crf", "0", *flag)
        assert r.exit_code == 0, r.output
        outs[len(flag)] = (decode_planes(dst), "\n".join(rep["warnings"]))
    inp = decode_planes(src)
    (kept, w0), (merged, w1) = outs[0], outs[1]
    assert "add --deinterlace" in w0 and "deinterlaced (bwdif)" in w1
    assert [t for t, *_ in merged] == [t for t, *_ in inp] == [t for t, *_ in kept]  # every frame, same time
    assert all(np.array_equal(y, yi) for (_, y, _, _), (_, yi, _, _) in zip(kept, inp))  # luma as it was
    def comb(y):  # line-to-line difference: high for combed (interlaced) pictures
        return float(np.abs(np.diff(y.astype(float), axis=0)).mean())
    assert np.mean([comb(y) for _, y, _, _ in merged]) < 0.7 * np.mean([comb(y) for _, y, _, _ in inp])
