"""Long films in segments: boundaries at scene cuts, frame-exact joins with the audio
copied once, and a rerun after Ctrl-C that redoes only the unfinished segments."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from clips import noisy_still, write_clip
from conftest import PHOTOS, default_sigint
from scgan_rt.cli import app


@pytest.fixture(scope="module")
def film(tmp_path_factory) -> Path:
    """6 s at 25 fps with audio: three shots, hard cuts at frames 48 and 100."""
    shots = [noisy_still(PHOTOS / name, n=n, w=96, h=64) for name, n in
             (("skimage__coffee.jpg", 48), ("skimage__astronaut.jpg", 52), ("skimage__rocket.jpg", 50))]
    return write_clip(tmp_path_factory.mktemp("film") / "film.mp4", shots[0] + shots[1] + shots[2], audio="aac")


def _streams(path: Path):
    with av.open(str(path)) as c:
        video = sorted(p.pts for p in c.demux(c.streams.video[0]) if p.size)
    with av.open(str(path)) as c:
        audio = [(p.pts, bytes(p)) for p in c.demux(c.streams.audio[0]) if p.size]
    with av.open(str(path)) as c:
        keys = [i for i, f in enumerate(c.decode(video=0)) if f.key_frame]
    return video, audio, keys


def _colorize(runner, src, dst, weights, *extra):
    r = runner.invoke(app, ["colorize", str(src), "-o", str(dst), "--model", str(weights), "--backend", "torch",
                            "--json", *map(str, extra)])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout[r.stdout.index("{"):])


def test_segments_join_to_the_one_piece_timeline_with_audio_once(runner, tmp_path, tiny_weights, film):
    _colorize(runner, film, tmp_path / "one.mp4", tiny_weights, "--segment-seconds", "0")
    rep = _colorize(runner, film, tmp_path / "seg.mp4", tiny_weights, "--segment-seconds", "2")
    one, seg = _streams(tmp_path / "one.mp4"), _streams(tmp_path / "seg.mp4")
    assert len(seg[0]) == 150 and seg[0] == one[0]  # every frame, every pts
    assert seg[1] == one[1]  # the audio packets, byte for byte, once
    # each segment starts with a keyframe; the boundary near 2 s moved to the cut at frame 48
    assert {0, 48, 100} <= set(seg[2])
    assert rep["video_frames"] == 150 and not (tmp_path / ".seg.mp4.segments").exists()


def test_plan_moves_boundaries_to_nearby_cuts_only(film):
    from scgan_rt.reading import probe_video
    from scgan_rt.segments import plan_segments
    from scgan_rt.settings import InferConfig

    info = probe_video(film)
    step = round(1 / (info.rate * info.time_base))
    plan = plan_segments(film, info, InferConfig(segment_seconds=2.0))
    assert [a // step for a, _ in plan] == [0, 48, 100]  # 50 -> cut at 48; 100 is a cut
    plan = plan_segments(film, info, InferConfig(segment_seconds=1.5))  # 37.5, 75, 112.5: cuts too far
    assert [a // step for a, _ in plan][:3] == [0, 38, 75] and plan[-1][1] is None


def test_interrupted_film_resumes_with_its_finished_segments(tmp_path, tiny_weights, film):
    out = tmp_path / "out.mp4"
    work = tmp_path / ".out.mp4.segments"
    args = [sys.executable, "-m", "scgan_rt", "colorize", str(film), "-o", str(out), "--model", str(tiny_weights),
            "--backend", "torch", "--segment-seconds", "1"]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         preexec_fn=default_sigint)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(work.glob("seg*.done"))) < 2:
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=60) == 130
    kept = len(list(work.glob("seg*.done")))
    assert 2 <= kept < 6 and not out.exists() and not list(work.glob("*partial*"))
    # the interrupt line says what was kept and how to go on
    said = p.stderr.read()
    assert f"interrupted: {kept} of 6 segments kept in {work}/; run the same command to resume" in said, said
    kept_frames = sum(json.loads(f.read_text())["frames"] for f in work.glob("seg*.done"))
    r = subprocess.run(args + ["--json", "--progress-every", "0.01"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["video_frames"] == 150 - kept_frames  # only the unfinished segments were encoded again
    assert f"resuming: {kept} of 6 segments done (out.mp4)" in r.stderr
    # stderr is a pipe: plain progress lines, counting the whole film, the rate only this run's frames
    lines = re.findall(r"film\.mp4 \(torch\): (\d+)/150, ([\d.]+) frames/s, ETA (\S+)", r.stderr)
    assert lines and all(int(done) > kept_frames for done, _, _ in lines), r.stderr
    one = tmp_path / "one.mp4"
    subprocess.run([sys.executable, "-m", "scgan_rt", "colorize", str(film), "-o", str(one), "--model",
                    str(tiny_weights), "--backend", "torch", "--segment-seconds", "0"], check=True, timeout=300,
                   capture_output=True, env=dict(os.environ))
    assert _streams(out)[0] == _streams(one)[0] and _streams(out)[1] == _streams(one)[1]
    assert not work.exists()


def test_two_shards_share_one_film_and_the_last_joins_it(runner, tmp_path, tiny_weights, film):
    from scgan_rt.journal import Shard

    owners = {k: [i for i in range(6) if Shard(k, 2).owns_segment("film.mp4", i)] for k in (1, 2)}
    assert len(owners[1]) == len(owners[2]) == 3  # the 6 segments are dealt evenly over both shards
    out = tmp_path / "out"
    first = _colorize(runner, film, out, tiny_weights, "--segment-seconds", "1", "--shard", "1/2")
    assert first["films_pending"] == [str(film)] and not (out / "film.mp4").exists()
    assert any("segments done" in w for w in first["warnings"])
    second = _colorize(runner, film, out, tiny_weights, "--segment-seconds", "1", "--shard", "2/2")
    assert second["done"] == 1 and first["video_frames"] + second["video_frames"] == 150
    _colorize(runner, film, tmp_path / "one.mp4", tiny_weights, "--segment-seconds", "0")
    joined, one = _streams(out / "film.mp4"), _streams(tmp_path / "one.mp4")
    assert joined[0] == one[0] and joined[1] == one[1]
    assert not (out / ".film.mp4.segments").exists()
    s = json.loads(runner.invoke(app, ["status", str(out), "--json"]).stdout)
    assert s["planned"] == 1 and s["done"] == 1 and s["pending"] == 0  # one film, not one per shard


def test_a_join_lock_of_a_dead_process_is_taken_over(tmp_path):
    import socket

    from scgan_rt.segments import _take_join_lock

    (tmp_path / "join.lock").write_text(f"{socket.gethostname()} {2 ** 22 + 12345}")  # no such pid
    assert _take_join_lock(tmp_path)
    assert not _take_join_lock(tmp_path)  # now held by this live process
    (tmp_path / "join.lock").write_text("another-host 1")
    assert not _take_join_lock(tmp_path)  # another machine's lock is left alone


def test_ray_spreads_a_films_segments_and_the_driver_joins_it(tmp_path, tiny_weights, film, runner):
    ray = pytest.importorskip("ray")
    from scgan_rt.journal import Journal
    from scgan_rt.pipeline import plan_jobs, settings_key
    from scgan_rt.ray_job import colorize_on_ray
    from scgan_rt.settings import InferConfig

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        cfg = InferConfig(backend="torch", segment_seconds=1.0, batch_size=2).validate()
        out = tmp_path / "out"
        jobs = plan_jobs([film], out)
        journal = Journal(out, None, settings_key(cfg, "k"))
        rep = colorize_on_ray(jobs, cfg, tiny_weights, journal=journal, workers=2)
        journal.close()
        assert rep.done == [str(out / "film.mp4")] and not rep.failed
        _colorize(runner, film, tmp_path / "one.mp4", tiny_weights, "--segment-seconds", "0")
        joined, one = _streams(out / "film.mp4"), _streams(tmp_path / "one.mp4")
        assert joined[0] == one[0] and joined[1] == one[1]
        assert not (out / ".film.mp4.segments").exists()
    finally:
        ray.shutdown()


def test_compare_of_a_segmented_film_goes_beside_it_with_every_frame(runner, tmp_path, tiny_weights, film):
    _colorize(runner, film, tmp_path / "seg.mp4", tiny_weights, "--segment-seconds", "2", "--compare")
    seg, cmp = _streams(tmp_path / "seg.mp4"), _streams(tmp_path / "seg_compare.mp4")
    assert cmp[0] == seg[0] and len(cmp[0]) == 150  # every frame, every pts
    assert cmp[1] == seg[1]  # the audio, copied
    with av.open(str(tmp_path / "seg_compare.mp4")) as c:
        assert c.streams.video[0].width == 2 * 96
