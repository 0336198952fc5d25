"""The streaming video pipeline: stabilisation, cuts, colour handling, faults.

Clips are generated with PyAV from the bundled real photos (tests/clips.py)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from scgan_rt.cli import app
from scgan_rt.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_RESOURCE, EXIT_TERMINATED
from scgan_rt.metrics import evaluate_video
from scgan_rt.temporal import ChromaStabilizer
from scgan_rt.weights import default_weights

from clips import decode_planes, gray_photo, noisy_still, write_clip
from conftest import default_sigint, outputs, sha

DEFAULT = default_weights()


def _run(runner, *args):
    return runner.invoke(app, ["colorize", *map(str, args)])


def _summary(r):
    return json.loads(r.stdout[r.stdout.index("{"):])


def test_default_output_beside_input_and_json_summary(runner, tiny_weights, tmp_path, photos_dir):
    src = write_clip(tmp_path / "film.mp4", noisy_still(photos_dir / "skimage__coffee.jpg", n=6))
    r = _run(runner, src, "--model", tiny_weights, "--json")
    assert r.exit_code == 0, r.output
    s = _summary(r)
    assert s["outputs"] == [str(tmp_path / "film_colorized.mp4")]
    assert s["video_frames"] == 6 and s["video_fps"] > 0 and s["seconds"] > 0
    # -o with a file name writes exactly there
    r = _run(runner, src, "-o", tmp_path / "x" / "mine.mkv", "--model", tiny_weights)
    assert r.exit_code == 0, r.output
    assert len(decode_planes(tmp_path / "x" / "mine.mkv")) == 6


def test_luma_plane_kept_bit_exact_and_chroma_predicted(runner, tmp_path, photos_dir):
    """Lossless encode (CRF 0) exposes the pipeline itself: the output Y plane is the input's."""
    src = write_clip(tmp_path / "in.mp4", noisy_still(photos_dir / "skimage__chelsea.jpg", n=5))
    r = _run(runner, src, "-o", tmp_path / "out.mp4", "--crf", "0", "--preset", "ultrafast")
    assert r.exit_code == 0, r.output
    fin, fout = decode_planes(src), decode_planes(tmp_path / "out.mp4")
    assert len(fin) == len(fout) == 5
    for (_, yi, ui, vi), (_, yo, uo, vo) in zip(fin, fout):
        assert np.array_equal(yi, yo)
        assert np.abs(ui.astype(int) - 128).max() <= 1  # gray source
        assert np.abs(uo.astype(int) - 128).mean() > 1 or np.abs(vo.astype(int) - 128).mean() > 1


def test_stabilisation_halves_flicker_on_a_noisy_still_scene(runner, tmp_path, photos_dir):
    """Lossless x264 (CRF 0) so the number measures the stabiliser, not the codec: at CRF 18
    x264's own chroma noise adds a floor (README, video benchmark)."""
    src = write_clip(tmp_path / "still.mp4", noisy_still(photos_dir / "skimage__astronaut.jpg", n=16, sigma=8))
    res = {}
    for strength in ("0", "0.7"):
        dst = tmp_path / f"s{strength}.mp4"
        r = _run(runner, src, "-o", dst, "--temporal-strength", strength, "--crf", "0", "--preset", "ultrafast")
        assert r.exit_code == 0, r.output
        res[strength] = evaluate_video(src, dst)
    off, on = res["0"]["flicker_out"], res["0.7"]["flicker_out"]
    assert off > 0.2  # the per-frame model really does flicker on this clip
    assert on <= 0.5 * off, (on, off)
    assert res["0.7"]["mean_chroma"] > 0.6 * res["0"]["mean_chroma"]  # smoothing, not desaturation


def test_no_chroma_crosses_a_hard_cut(runner, tmp_path, photos_dir):
    a = noisy_still(photos_dir / "skimage__astronaut.jpg", n=8, sigma=3, seed=1)
    b = noisy_still(photos_dir / "skimage__coffee.jpg", n=8, sigma=3, seed=2)
    src = write_clip(tmp_path / "cut.mp4", a + b, options={"crf": "0"})
    outs = {}
    for strength in ("0", "0.7"):
        dst = tmp_path / f"c{strength}.mp4"
        r = _run(runner, src, "-o", dst, "--temporal-strength", strength, "--crf", "0", "--preset", "ultrafast")
        assert r.exit_code == 0, r.output
        outs[strength] = decode_planes(dst)
    # Frame 8 is the first after the cut: identical with and without smoothing.
    for k in (2, 3):
        assert np.array_equal(outs["0"][8][k], outs["0.7"][8][k])
    # ...while before the cut smoothing did change the chroma (so the test can fail).
    assert any(not np.array_equal(outs["0"][i][2], outs["0.7"][i][2]) for i in range(1, 8))
    assert evaluate_video(src, tmp_path / "c0.7.mp4")["scene_cuts"] == 1


def test_stabiliser_resets_at_cut_and_spares_moving_regions():
    torch.manual_seed(0)
    st = ChromaStabilizer(0.8)
    g = torch.rand(1, 1, 64, 64) * 0.2 + 0.4
    c1, c2 = torch.full((1, 2, 64, 64), 0.1), torch.full((1, 2, 64, 64), -0.1)
    st(g, c1)
    smoothed = st(g, c2)
    assert torch.allclose(smoothed, 0.8 * c1 + 0.2 * c2)  # static: mostly the running value
    moved = g.clone()
    moved[..., :32, :32] += 0.3  # a bright object moves into the top-left quarter
    out = st(moved, c1)
    assert torch.allclose(out[..., :24, :24], c1[..., :24, :24], atol=1e-3)  # moving region: own colour
    cut = torch.rand(1, 1, 64, 64) * 0.1  # a dark, different shot
    assert torch.equal(st(cut, c2), c2) and st.stats.cuts == 1


def test_colour_footage_is_skipped_unless_forced(runner, tiny_weights, tmp_path, photos_dir):
    from PIL import Image

    rgb = np.asarray(Image.open(photos_dir / "skimage__coffee.jpg").convert("RGB").resize((96, 64)))
    src = write_clip(tmp_path / "colour.mp4", [rgb] * 4)
    r = _run(runner, src, "-o", tmp_path / "o", "--model", tiny_weights, "--json")
    assert r.exit_code == 0, r.output
    assert _summary(r)["skipped_color"] == 1 and not (tmp_path / "o" / "colour.mp4").exists()
    assert "--force" in r.output
    r = _run(runner, src, "-o", tmp_path / "o", "--model", tiny_weights, "--force")
    assert r.exit_code == 0, r.output
    assert len(decode_planes(tmp_path / "o" / "colour.mp4")) == 4


def test_ten_bit_bt709_limited_source_keeps_depth_and_tags(runner, tiny_weights, tmp_path, photos_dir):
    frames = [gray_photo(photos_dir / "skimage__rocket.jpg", 96, 64)] * 3
    tags = {"color_range": 1, "colorspace": 1, "color_primaries": 1, "color_trc": 1}
    src = write_clip(tmp_path / "hd10.mp4", frames, pix_fmt="yuv420p10le", tags=tags)
    r = _run(runner, src, "-o", tmp_path / "o.mp4", "--model", tiny_weights)
    assert r.exit_code == 0, r.output
    with av.open(str(tmp_path / "o.mp4")) as c:
        f = next(c.decode(video=0))
        cc = c.streams.video[0].codec_context
        assert f.format.name == "yuv420p10le"
        assert (int(cc.color_range), int(cc.colorspace), int(cc.color_primaries), int(cc.color_trc)) == (1, 1, 1, 1)
    (_, yi, _, _), (_, yo, _, _) = decode_planes(src)[0], decode_planes(tmp_path / "o.mp4")[0]
    assert np.abs(yi.astype(int) - yo.astype(int)).mean() < 4  # 10-bit luma survives (lossy re-encode)


def test_odd_size_gray_pixel_format_source(runner, tiny_weights, tmp_path, photos_dir):
    """175x143 FFV1 'gray' source: output is 4:2:0 colour (never gray), padded to even, all frames."""
    frames = [gray_photo(photos_dir / "skimage__chelsea.jpg", 175, 143)] * 3
    src = write_clip(tmp_path / "odd.mkv", frames, codec="ffv1", pix_fmt="gray")
    r = _run(runner, src, "-o", tmp_path / "o", "--model", tiny_weights, "--json")
    assert r.exit_code == 0, r.output
    assert any("padded to 176x144" in w for w in _summary(r)["warnings"])
    with av.open(str(tmp_path / "o" / "odd.mkv")) as c:
        fs = list(c.decode(video=0))
    assert len(fs) == 3 and fs[0].format.name == "yuv420p" and (fs[0].width, fs[0].height) == (176, 144)
    # full-range gray becomes limited-range BT.601 luma, tagged as such
    y = np.frombuffer(fs[0].planes[0], np.uint8).reshape(144, -1)[:143, :175]
    assert np.abs(y.astype(int) - (16 + frames[0].astype(int) * 219 / 255)).mean() < 3


def test_rotation_is_carried_over(runner, tiny_weights, tmp_path, photos_dir):
    src = write_clip(tmp_path / "rot.mp4", noisy_still(photos_dir / "skimage__rocket.jpg", n=3), rotation=90)
    r = _run(runner, src, "-o", tmp_path / "o.mp4", "--model", tiny_weights)
    assert r.exit_code == 0, r.output
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert next(c.decode(video=0)).rotation == 90


def test_audio_the_container_cannot_hold_is_reencoded_to_aac(runner, tiny_weights, tmp_path, photos_dir):
    src = write_clip(tmp_path / "old.avi", noisy_still(photos_dir / "skimage__coffee.jpg", n=10), audio="pcm_mulaw",
                     audio_rate=8000)
    r = _run(runner, src, "-o", tmp_path / "o", "--model", tiny_weights, "--json")
    assert r.exit_code == 0, r.output
    assert any("re-encoded to AAC" in w for w in _summary(r)["warnings"])
    with av.open(str(tmp_path / "o" / "old.mp4")) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
        a = c.streams.audio[0]
        dur = a.duration * a.time_base.numerator / a.time_base.denominator
    assert dur == pytest.approx(10 / 25, abs=0.1)


def test_corrupt_packets_are_skipped_then_too_many_give_up(runner, tiny_weights, tmp_path, photos_dir):
    frames = noisy_still(photos_dir / "skimage__coffee.jpg", n=30)
    src = write_clip(tmp_path / "dmg.mp4", frames, options={"g": "10"}, corrupt={12, 13})
    r = _run(runner, src, "-o", tmp_path / "o", "--model", tiny_weights, "--json")
    assert r.exit_code == 0, r.output
    s = _summary(r)
    assert any("2 corrupt packets skipped" in w for w in s["warnings"])
    assert s["video_frames"] == 28
    bad = write_clip(tmp_path / "ruined.mp4", frames * 3, options={"g": "10"}, corrupt=set(range(3, 90)))
    before = sha(bad)
    r = _run(runner, bad, "-o", tmp_path / "o2", "--model", tiny_weights)
    assert r.exit_code == EXIT_BAD_INPUT, r.output
    assert "corrupt" in r.output and "Traceback" not in r.output
    assert sha(bad) == before and not outputs(tmp_path / "o2", "*.*")


def test_image_named_mp4_is_refused(runner, tiny_weights, tmp_path, photos_dir):
    p = tmp_path / "photo.mp4"
    p.write_bytes((photos_dir / "skimage__chelsea.jpg").read_bytes())
    r = _run(runner, p, "-o", tmp_path / "o", "--model", tiny_weights)
    assert r.exit_code == EXIT_BAD_INPUT and "is an image" in r.output


def test_unwritable_output_path(runner, tiny_weights, tmp_path, photos_dir):
    src = write_clip(tmp_path / "a.mp4", noisy_still(photos_dir / "skimage__coffee.jpg", n=3))
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder should be")
    r = _run(runner, src, "-o", blocker / "out.mp4", "--model", tiny_weights)  # works as root too
    assert r.exit_code == EXIT_RESOURCE, r.output
    assert "Traceback" not in r.output and blocker.read_text().startswith("a file")
    if os.geteuid() != 0:  # root ignores directory permissions
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        r = _run(runner, src, "-o", ro, "--model", tiny_weights)
        assert r.exit_code == EXIT_RESOURCE, r.output


def test_bundled_real_clip_with_the_default_model(runner, tmp_path):
    """The quickstart's clip: real black-and-white footage, default model, default settings."""
    src = Path(__file__).resolve().parents[1] / "scgan_rt" / "samples" / "video" / "carphone_gray.mp4"
    before = sha(src)
    r = _run(runner, src, "-o", tmp_path / "c.mp4", "--json")
    assert r.exit_code == 0, r.output
    assert sha(src) == before
    m = evaluate_video(src, tmp_path / "c.mp4")
    assert m["frames_in"] == m["frames_out"] == 120 and m["max_timestamp_error_s"] < 1e-3
    assert m["luma_psnr_db"] > 40  # original luma, one lossy re-encode
    assert m["mean_chroma"] > 4  # colour was added (gray footage has ~0)
    assert m["flicker_in"] < 0.05


def test_preview_and_compare(runner, tiny_weights, tmp_path, photos_dir):
    src = write_clip(tmp_path / "p.mp4", noisy_still(photos_dir / "skimage__coffee.jpg", n=20, w=96, h=64))
    r = _run(runner, src, "-o", tmp_path / "prev", "--preview", "3", "--model", tiny_weights)
    assert r.exit_code == 0, r.output
    pngs = sorted((tmp_path / "prev").glob("*.png"))
    assert [p.name for p in pngs] == [f"p_preview_0{i}.png" for i in (1, 2, 3)]
    for out, colour in ((tmp_path / "cmp", tmp_path / "cmp" / "p.mp4"), (tmp_path / "film.mp4", tmp_path / "film.mp4")):
        r = _run(runner, src, "-o", out, "--compare", "--model", tiny_weights)
        assert r.exit_code == 0, r.output
        assert decode_planes(colour)[0][1].shape == (64, 96)  # the colour film stays as it is
        planes = decode_planes(colour.with_name(colour.stem + "_compare.mp4"))
        assert len(planes) == 20 and planes[0][1].shape == (64, 192)
        assert np.abs(planes[0][2][:, :48].astype(int) - 128).max() <= 2  # left half stays gray
        y = planes[0][1].astype(int)
        assert np.abs(y[:, :96] - y[:, 96:]).mean() < 2  # the same picture both sides (lossy encode)


def _cli_subprocess(args, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "scgan_rt", "colorize", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_full_disk_leaves_no_partial_file(tmp_path, tiny_weights, photos_dir):
    """RLIMIT_FSIZE makes writes past 64 KiB fail with EFBIG, as a full disk fails them."""
    import resource

    src = write_clip(tmp_path / "big.mp4", noisy_still(photos_dir / "skimage__astronaut.jpg", n=40, w=256, h=192))
    out = tmp_path / "out"

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    p = _cli_subprocess([src, "-o", out, "--model", tiny_weights, "--backend", "torch", "--crf", "0",
                         "--preset", "ultrafast"], preexec_fn=limit)
    _, err = p.communicate(timeout=300)
    assert p.returncode == EXIT_RESOURCE, err
    assert "disk full" in err and "Traceback" not in err
    assert not outputs(out)


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, EXIT_INTERRUPTED), (signal.SIGTERM, EXIT_TERMINATED)])
def test_interrupt_exits_130_and_leaves_nothing(tmp_path, tiny_weights, photos_dir, sig, code):
    frames = noisy_still(photos_dir / "skimage__astronaut.jpg", n=300, w=320, h=240)
    src = write_clip(tmp_path / "long.mp4", frames, options={"preset": "ultrafast"})
    out = tmp_path / "out"
    p = _cli_subprocess([src, "-o", out, "--model", tiny_weights, "--backend", "torch", "--preset", "veryslow"],
                        preexec_fn=default_sigint)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.glob(".*partial*")):
        time.sleep(0.05)
    assert list(out.glob(".*partial*")), "encoding never started"
    time.sleep(0.5)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    assert "Traceback" not in err
    assert not outputs(out)


def _clip_with_subtitles(path, frames):
    from fractions import Fraction

    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=25)
        v.height, v.width = frames[0].shape
        v.pix_fmt = "yuv420p"
        s = c.add_mux_stream("subrip")
        s.time_base = Fraction(1, 1000)
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="gray")
            f.pts = i
            for p in v.encode(f):
                c.mux(p)
            if i in (1, 4):
                pk = av.Packet(f"line {i}: Hello, 1920s".encode())
                pk.stream, pk.time_base = s, Fraction(1, 1000)
                pk.pts = pk.dts = i * 40
                pk.duration = 100
                c.mux(pk)
        for p in v.encode(None):
            c.mux(p)
    return path


def _subtitle_packets(path):
    with av.open(str(path)) as c:
        if not c.streams.subtitles:
            return []
        return [bytes(p) for p in c.demux(c.streams.subtitles[0]) if p.size]


def test_subtitles_copied_packet_for_packet_or_dropped_with_a_warning(runner, tiny_weights, tmp_path, photos_dir):
    src = _clip_with_subtitles(tmp_path / "subs.mkv", noisy_still(photos_dir / "skimage__rocket.jpg", n=8))
    assert len(_subtitle_packets(src)) == 2
    r = _run(runner, src, "-o", tmp_path / "o", "--model", tiny_weights)
    assert r.exit_code == 0, r.output
    assert _subtitle_packets(tmp_path / "o" / "subs.mkv") == _subtitle_packets(src)
    r = _run(runner, src, "-o", tmp_path / "o.mp4", "--model", tiny_weights, "--json")  # MP4 cannot hold SubRip
    assert r.exit_code == 0, r.output
    assert any(w.startswith("subs.mkv: subtitle stream 1") and "dropped" in w for w in _summary(r)["warnings"])
    assert len(decode_planes(tmp_path / "o.mp4")) == 8


@pytest.mark.parametrize("args", [["--preset", "turbo"], ["--codec", "nope"], ["--temporal-strength", "1"],
                                  ["--crf", "99"]])
def test_bad_video_options_are_usage_errors(runner, tiny_weights, tmp_path, photos_dir, args):
    src = write_clip(tmp_path / "a.mp4", noisy_still(photos_dir / "skimage__coffee.jpg", n=2))
    r = _run(runner, src, "-o", tmp_path / "o", "--model", tiny_weights, *args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and not outputs(tmp_path / "o", "*.*")


@pytest.mark.parametrize("codec", ["libx265", "libvpx-vp9", "libsvtav1"])
def test_other_encoders(runner, tiny_weights, tmp_path, photos_dir, codec):
    from scgan_rt.encoding import video_encoders

    if codec not in video_encoders():
        pytest.skip(f"{codec} not in this PyAV build")
    src = write_clip(tmp_path / "a.mp4", noisy_still(photos_dir / "skimage__coffee.jpg", n=4, w=96, h=64))
    r = _run(runner, src, "-o", tmp_path / "o.mkv", "--model", tiny_weights, "--codec", codec, "--crf", "30")
    assert r.exit_code == 0, r.output
    with av.open(str(tmp_path / "o.mkv")) as c:
        assert c.streams.video[0].codec_context.name in {"libx265": ("hevc",), "libvpx-vp9": ("vp9", "libvpx-vp9"),
                                                          "libsvtav1": ("av1", "libdav1d", "libaom-av1")}[codec]
    assert len(decode_planes(tmp_path / "o.mkv")) == 4


def test_truncated_faststart_file_keeps_what_decodes_and_says_so(runner, tiny_weights, tmp_path, photos_dir):
    """moov at the front (faststart), the tail cut off: the decodable frames are colorized,
    the run succeeds, and the warning says the input was cut short."""
    frames = noisy_still(photos_dir / "skimage__coffee.jpg", n=40)
    full = tmp_path / "full.mp4"
    with av.open(str(full), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 128, 96, "yuv420p"
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="gray")
            vf.pts = i
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    cut = tmp_path / "cut.mp4"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    before = sha(cut)
    r = _run(runner, cut, "-o", tmp_path / "o.mp4", "--model", tiny_weights, "--json")
    assert r.exit_code == 0, r.output
    s = _summary(r)
    n = s["video_frames"]
    assert 0 < n < 40
    assert any(f"only {n} of 40 frames could be decoded" in w for w in s["warnings"])
    assert len(decode_planes(tmp_path / "o.mp4")) == n and sha(cut) == before


def test_evaluate_video_refuses_other_sizes_and_frame_counts(runner, tiny_weights, tmp_path, photos_dir):
    still = noisy_still(photos_dir / "skimage__coffee.jpg", n=12, w=96, h=64)
    src = write_clip(tmp_path / "src.mp4", still)
    short = write_clip(tmp_path / "short.mp4", still[:9])
    wide = write_clip(tmp_path / "wide.mp4", noisy_still(photos_dir / "skimage__coffee.jpg", n=12, w=192, h=64))
    for other, words in ((wide, ["frame sizes differ", "src.mp4 is 96x64", "wide.mp4 is 192x64"]),
                         (short, ["frame counts differ", "src.mp4 has 12 frames", "short.mp4 has 9"])):
        r = runner.invoke(app, ["evaluate-video", str(src), str(other)])
        assert r.exit_code == 3, r.output
        line = r.output.strip()
        assert "\n" not in line and all(w in line for w in words), line
    assert runner.invoke(app, ["evaluate-video", str(src), str(src), "--json"]).exit_code == 0
