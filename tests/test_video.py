"""Video path: PyAV-generated clips for the edge cases (audio, VFR, odd sizes, junk)."""
import json
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from scgan_rt.cli import app
from scgan_rt.errors import EXIT_BAD_INPUT

from clips import write_clip
from conftest import outputs, sha


def make_clip(path, w=66, h=50, n=8, audio=False, pts=None, photo=None, colour=False):
    """H.264 clip whose frames are a real photo panning (gray unless ``colour``); optional
    AAC audio and custom pts (ms)."""
    base = Image.open(photo).convert("RGB" if colour else "L").convert("RGB").resize((w + n * 2, h))
    base = np.asarray(base, dtype=np.uint8)
    frames = [np.pad(base[:, 2 * i:2 * i + w], ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") for i in range(n)]
    return write_clip(path, frames, pts=pts, audio="aac" if audio else None)


def _tb(stream):
    # PyAV 19 returns AVRational, 18 Fraction: normalise for arithmetic
    return Fraction(stream.time_base.numerator, stream.time_base.denominator)


def _decode(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(v)]
    return frames


def _audio_packets(path):
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def test_clip_with_audio_and_vfr_keeps_pts_audio_and_luminance(runner, tiny_weights, tmp_path, photos_dir):
    pts = [0, 40, 80, 200, 240, 400, 410, 500]  # variable frame rate
    src = make_clip(tmp_path / "in.mp4", audio=True, pts=pts, photo=photos_dir / "skimage__coffee.jpg")
    before = sha(src)
    out = tmp_path / "out"
    r = runner.invoke(app, ["colorize", str(src), "-o", str(out), "--model", str(tiny_weights), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout[r.stdout.index("{"):])
    assert s["video_frames"] == 8
    assert sha(src) == before
    fin, fout = _decode(src), _decode(out / "in.mp4")
    assert len(fout) == len(fin) == 8
    with av.open(str(src)) as c:
        tb_in = _tb(c.streams.video[0])
    with av.open(str(out / "in.mp4")) as c:
        tb_out = _tb(c.streams.video[0])
    assert [float(p * tb_out) for p, _ in fout] == pytest.approx([float(p * tb_in) for p, _ in fin])
    assert [float(p * tb_in) for p, _ in fin] == pytest.approx([t / 1000 for t in pts])
    assert _audio_packets(out / "in.mp4") == _audio_packets(src)  # copied bit-exact
    w = np.array([0.299, 0.587, 0.114])
    for (_, a), (_, b) in zip(fin, fout):
        mse = np.mean((a.astype(float) @ w - b.astype(float) @ w) ** 2)
        assert 10 * np.log10(255 ** 2 / mse) > 35  # luminance kept through two lossy encodes


def test_odd_size_is_padded_not_cropped(runner, tiny_weights, tmp_path, photos_dir):
    src = make_clip(tmp_path / "odd.mp4", w=65, h=49, n=3, photo=photos_dir / "skimage__chelsea.jpg")
    with av.open(str(src)) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (66, 50)  # encoder needs even
    out = tmp_path / "o"
    r = runner.invoke(app, ["colorize", str(src), "-o", str(out), "--model", str(tiny_weights)])
    assert r.exit_code == 0, r.output
    assert len(_decode(out / "odd.mp4")) == 3


@pytest.mark.parametrize("case", ["zero", "text", "audio_only", "truncated_moov_at_end"])
def test_bad_videos(runner, tiny_weights, tmp_path, photos_dir, case):
    p = tmp_path / "bad.mp4"
    if case == "zero":
        p.write_bytes(b"")
    elif case == "text":
        p.write_text("not a video at all\n" * 10)
    elif case == "audio_only":
        with av.open(str(tmp_path / "a.m4a"), "w") as c:
            a = c.add_stream("aac", rate=16000)
            a.layout = "mono"
            af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            af.sample_rate, af.pts = 16000, 0
            for pk in list(a.encode(af)) + list(a.encode(None)):
                c.mux(pk)
        p.write_bytes((tmp_path / "a.m4a").read_bytes())
    else:
        good = make_clip(tmp_path / "g.mp4", n=6, photo=photos_dir / "skimage__rocket.jpg").read_bytes()
        p.write_bytes(good[: len(good) // 2])
    before = p.read_bytes()
    out = tmp_path / "out"
    r = runner.invoke(app, ["colorize", str(p), "-o", str(out), "--model", str(tiny_weights)])
    assert r.exit_code == EXIT_BAD_INPUT, r.output
    assert "Traceback" not in r.output
    assert p.read_bytes() == before
    assert not outputs(out, "*.*")  # no partial output left
