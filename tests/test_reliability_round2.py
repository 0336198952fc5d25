"""Fault cases of the second reliability round: the Python API as safe as the CLI, one
writer per output folder, special files, items that vanish, model files that are not
models, a damaged journal, and memory bounded whatever the flags."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clips import noisy_still, write_clip
from conftest import sha
from scgan_rt.cli import app
from scgan_rt.errors import EXIT_BAD_INPUT, EXIT_BAD_MODEL, EXIT_PARTIAL, EXIT_USAGE, InputError, UsageError

from test_reliability import COFFEE, _cli, _run  # the first round's helpers


def _gray(path: Path, w: int = 64, h: int = 48) -> Path:
    Image.open(COFFEE).convert("L").resize((w, h)).save(path)
    return path


@pytest.fixture(scope="module")
def api(tiny_weights):
    from scgan_rt import Colorizer

    return Colorizer.open(weights=tiny_weights, backend="torch", device="cpu")


def test_api_open_takes_a_weights_path_in_first_place(tiny_weights):
    from scgan_rt import Colorizer

    assert Colorizer.open(tiny_weights, backend="torch", device="cpu").weights == tiny_weights


# --- the API is the CLI's equal -------------------------------------------------------------

def test_api_refuses_to_write_over_its_input_in_every_spelling(api, tmp_path):
    src = _gray(tmp_path / "a.png")
    (tmp_path / "x").mkdir()
    (tmp_path / "link").symlink_to(tmp_path)
    os.link(src, tmp_path / "hard.png")
    before = sha(src)
    clip = write_clip(tmp_path / "v.mp4", noisy_still(COFFEE, n=3, w=64, h=48))
    for dst in (src, tmp_path / "x" / ".." / "a.png", tmp_path / "link" / "a.png", tmp_path / "hard.png"):
        with pytest.raises(UsageError, match="output would overwrite input"):
            api.colorize_file(src, dst)
    with pytest.raises(UsageError, match="output would overwrite input"):
        api.colorize_video(clip, tmp_path / "link" / "v.mp4")
    assert sha(src) == before


GRAY = np.asarray(Image.open(COFFEE).convert("L").resize((64, 48)))


@pytest.mark.parametrize("array, kind", [
    (GRAY, np.uint8),
    (GRAY.astype(np.uint16) * 257, np.uint16),
    (GRAY.astype(np.int32), np.uint8),  # 8-bit code values in a wider integer
    (GRAY.astype(np.int64) * 257, np.uint16),
    (GRAY.astype(np.float64) / 255, np.float32),
    (GRAY.astype(np.float16) / 255, np.float32),
    (np.repeat(GRAY[..., None], 3, 2).astype(np.int16), np.uint8),
    (GRAY[..., None], np.uint8),
])
def test_api_arrays_keep_their_picture_whatever_the_dtype(api, array, kind):
    out = api.colorize(array)
    assert out.dtype == kind and out.shape == GRAY.shape + (3,)
    top = {np.uint8: 255, np.uint16: 65535, np.float32: 1}[kind]
    y = (out.astype(np.float32) / top) @ np.array([0.299, 0.587, 0.114], np.float32)
    assert np.abs(y * 255 - GRAY).mean() < 1.5  # the luminance is the input's, never black or white


@pytest.mark.parametrize("array, message", [
    (GRAY.astype(np.float32), "float pictures must be in \\[0, 1\\]"),
    (GRAY.astype(np.int32) - 300, "integer pictures must hold 0..255"),
    (GRAY.astype(np.int64) * 70000, "integer pictures must hold"),
    (GRAY > 100, "bool array"),
    (GRAY.astype(np.complex64), "complex64 array"),
    (np.where(GRAY > 100, np.nan, 0.5), "NaN or Inf"),
    (np.zeros((0, 5), np.uint8), "has no pixels"),
    (GRAY[0], "shape"),
    (GRAY[None, ..., None], "shape"),
    (np.stack([GRAY, GRAY], 2), "shape"),
    (None, "expected a PIL image or a numpy array, got NoneType"),
    ([[1, 2], [3, 4]], "got list"),
])
def test_api_refuses_arrays_it_would_get_wrong_with_a_message(api, array, message):
    with pytest.raises(InputError, match=message):
        api.colorize(array)


def test_api_deep_pil_modes_follow_the_array_rules(api):
    deep = Image.fromarray(GRAY.astype(np.uint16) * 257)  # mode I;16
    out = api.colorize(deep)
    assert isinstance(out, Image.Image) and out.mode == "RGB"
    y = np.asarray(out, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    assert np.abs(y - GRAY).mean() < 1.5
    with pytest.raises(InputError, match="float pictures must be in"):
        api.colorize(Image.fromarray(GRAY.astype(np.float32)))  # mode F in 0..255


# --- one bad item is that item's failure ----------------------------------------------------

def test_an_input_that_vanishes_mid_run_fails_alone(runner, tmp_path, tiny_weights, monkeypatch):
    import scgan_rt.pipeline as pipeline

    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        _gray(src / name)
    real = pipeline.load_image

    def vanishing(path, **kw):
        if Path(path).name == "b.png":
            Path(path).unlink()  # deleted by someone else just before we read it
        return real(path, **kw)

    monkeypatch.setattr(pipeline, "load_image", vanishing)
    r, rep = _run(runner, src, "-o", tmp_path / "out", "--model", tiny_weights)
    assert r.exit_code == EXIT_PARTIAL, r.output
    assert rep["done"] == 2 and "not found" in rep["failed"][0]["error"]
    lines = [json.loads(x) for x in (tmp_path / "out" / "journal.jsonl").read_text().splitlines()]
    assert [x["status"] for x in lines if x.get("input") == "b.png"] == ["failed"]


def test_special_files_in_a_folder_are_counted_and_never_opened(tmp_path, tiny_weights):
    src = tmp_path / "in"
    (src / "real").mkdir(parents=True)
    _gray(src / "a.png")
    os.mkfifo(src / "pipe.jpg")
    (src / "linked").symlink_to(src / "real")
    (src / "gone.png").symlink_to(tmp_path / "nowhere.png")
    r = _cli(["colorize", src, "-o", tmp_path / "out", "--model", tiny_weights, "--json"], timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout[r.stdout.index("{"):])
    assert rep["skipped_unsupported"] == {"not a regular file (a FIFO)": [str(src / "pipe.jpg")],
                                          "symlinked folder (not followed)": [str(src / "linked")],
                                          "not a regular file (a broken link)": [str(src / "gone.png")]}


@pytest.mark.parametrize("make", ["fifo", "device"])
def test_a_special_file_named_explicitly_is_exit_3_without_opening_it(tmp_path, tiny_weights, make):
    path = tmp_path / "pipe.jpg"
    if make == "fifo":
        os.mkfifo(path)
    else:
        path = Path("/dev/zero")
    for extra in ([], ["-o", tmp_path / "out"]):
        r = _cli(["colorize", path, *extra, "--model", tiny_weights], timeout=120)
        assert r.returncode == EXIT_BAD_INPUT, r.stderr
        assert f"not a regular file: {path} is a" in r.stderr and "internal error" not in r.stderr


def test_long_names_shorten_the_temp_name_and_an_output_too_long_fails_alone(runner, tmp_path, tiny_weights):
    src = tmp_path / "in"
    src.mkdir()
    long240 = _gray(src / ("a" * 236 + ".png"))
    long250 = _gray(src / ("b" * 246 + ".png"))
    short = _gray(src / "c.png")
    r, rep = _run(runner, src, "-o", tmp_path / "out", "--model", tiny_weights)
    assert r.exit_code == 0 and rep["done"] == 3, r.output
    r, rep = _run(runner, long240, long250, short, "--model", tiny_weights)  # beside: NAME_colorized.png
    assert r.exit_code == EXIT_PARTIAL, r.output
    assert rep["done"] == 2 and "output name too long" in rep["failed"][0]["error"], json.dumps(rep).replace("a" * 50, "A").replace("b" * 50, "B")
    assert not [p for p in src.iterdir() if ".partial" in p.name]


def test_a_live_runs_temp_file_is_left_alone_and_a_dead_ones_removed(runner, tmp_path, tiny_weights):
    from scgan_rt.atomic import _host_tag

    out = tmp_path / "out"
    out.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mine = out / f".a.png.{_host_tag()}{live.pid}-abcdefgh.partial.png"
        dead = out / f".a.png.{_host_tag()}{2 ** 22 + 12345}-abcdefgh.partial.png"
        for p in (mine, dead):
            p.write_bytes(b"half")
        src = tmp_path / "in"
        src.mkdir()
        _gray(src / "a.png")
        r, rep = _run(runner, src, "-o", out, "--model", tiny_weights)
        assert r.exit_code == 0, r.output
        assert mine.exists() and not dead.exists()
    finally:
        live.kill()
        live.wait()


# --- one writer per output folder -----------------------------------------------------------

def test_a_second_run_into_a_locked_folder_is_refused_naming_the_holder(runner, tmp_path, tiny_weights):
    import socket
    import threading

    src = tmp_path / "in"
    src.mkdir()
    _gray(src / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    lock = out / ".scgan-rt.lock"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(f"{socket.gethostname()} {live.pid}")
        r, _ = _run(runner, src, "-o", out, "--model", tiny_weights)
        assert r.exit_code == EXIT_USAGE and f"in use by another scgan-rt run (host {socket.gethostname()}, " \
            f"pid {live.pid}" in r.output and "--wait-lock" in r.output
        assert not (out / "a.png").exists() and not (out / "journal.jsonl").exists()
        threading.Timer(1.0, lock.unlink).start()  # the other run finishes
        r, rep = _run(runner, src, "-o", out, "--model", tiny_weights, "--wait-lock")
        assert r.exit_code == 0 and rep["done"] == 1, r.output
    finally:
        live.kill()
        live.wait()
    lock.write_text(f"{socket.gethostname()} {2 ** 22 + 12345}")  # a killed run's: taken over
    r, rep = _run(runner, src, "-o", out, "--model", tiny_weights, "--overwrite")
    assert r.exit_code == 0 and rep["done"] == 1, r.output
    assert not lock.exists()



# --- model files that are not models: exit 4, one line ---------------------------------------

def _other_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 256, 256])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 256, 256])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "other", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("make, message", [
    (lambda d: d, "is a folder; give a weights (.safetensors), ONNX or engine file"),
    (lambda d: _other_onnx(d / "other.onnx"), "other.onnx is not an scgan-rt colorization model: it lacks the "
                                              "input 'gray' and the output 'rgb' (it has inputs x; outputs y)"),
    (lambda d: (d / "x.safetensors").write_text("hello, not weights\n") and d / "x.safetensors",
     "x.safetensors is not a weights file: neither safetensors nor a torch checkpoint (it holds text)"),
    (lambda d: (d / "r.onnx").write_bytes(np.random.default_rng(0).bytes(4096)) and d / "r.onnx",
     "r.onnx is not a valid ONNX file"),
])
def test_model_files_that_are_not_models_are_one_line_exit_4(tmp_path, make, message):
    models = tmp_path / "models"
    models.mkdir()
    model = make(models)
    src = _gray(tmp_path / "a.png")
    r = _cli(["colorize", src, "-o", tmp_path / "out", "--model", model], timeout=120)
    assert r.returncode == EXIT_BAD_MODEL, r.stderr
    assert r.stderr.strip().splitlines() == [f"error: {r.stderr.split('error: ', 1)[1].strip()}"], r.stderr
    assert message in r.stderr
    assert not (tmp_path / "out").exists()  # a bad model leaves no empty output folder behind


def test_python_warnings_reach_the_terminal_as_one_line(runner, tmp_path, tiny_weights, monkeypatch):
    import warnings

    import scgan_rt.pipeline as pipeline

    real = pipeline.plan_jobs

    def noisy(*a, **kw):
        warnings.warn("a dependency says something\nover two lines", UserWarning)
        return real(*a, **kw)

    monkeypatch.setattr(pipeline, "plan_jobs", noisy)
    r = runner.invoke(app, ["colorize", str(_gray(tmp_path / "a.png")), "--model", str(tiny_weights)])
    assert r.exit_code == 0, r.output
    assert "warning: a dependency says something" in r.stderr
    assert "UserWarning" not in r.stderr and "warnings.warn" not in r.stderr and "over two lines" not in r.stderr


# --- output paths and flag values ------------------------------------------------------------

def test_an_output_folder_containing_the_input_folder_is_named(runner, tmp_path, tiny_weights):
    src = tmp_path / "photos"
    src.mkdir()
    _gray(src / "a.png")
    r, _ = _run(runner, src, "-o", tmp_path, "--model", tiny_weights)
    assert r.exit_code == EXIT_USAGE and "contains the input folder" in r.output


def test_a_trailing_slash_on_o_means_a_folder(runner, tmp_path, tiny_weights):
    src = _gray(tmp_path / "a.png")
    r, rep = _run(runner, src, "-o", f"{tmp_path / 'out.png'}/", "--model", tiny_weights)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out.png").is_dir() and (tmp_path / "out.png" / "a.png").is_file()
    folder = tmp_path / "in"
    folder.mkdir()
    _gray(folder / "b.png")
    r, rep = _run(runner, folder, "-o", f"{tmp_path / 'results.v2'}/", "--model", tiny_weights)
    assert r.exit_code == 0 and (tmp_path / "results.v2" / "b.png").is_file(), r.output


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_segment_seconds_must_be_a_number(runner, tmp_path, tiny_weights, value):
    r, _ = _run(runner, _gray(tmp_path / "a.png"), "--segment-seconds", value, "--model", tiny_weights)
    assert r.exit_code == EXIT_USAGE and "--segment-seconds must be a number >= 0" in r.output


# --- bounded memory whatever the flags -------------------------------------------------------

def test_a_film_batch_larger_than_memory_allows_is_reduced_with_a_note(runner, tmp_path, tiny_weights, monkeypatch):
    from types import SimpleNamespace

    import psutil

    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=1 << 30))
    clip = write_clip(tmp_path / "v.mp4", noisy_still(COFFEE, n=12, w=64, h=48))
    r, rep = _run(runner, clip, "-o", tmp_path / "o.mp4", "--batch-size", "100000", "--model", tiny_weights,
                  "--backend", "torch")
    assert r.exit_code == 0, r.output
    notes = [w for w in rep["warnings"] if "--batch-size 100000 reduced to" in w]
    assert len(notes) == 1 and "0.5 GiB (half the available memory)" in notes[0]
    n = int(notes[0].split("reduced to ")[1].split(":")[0])
    assert 1 <= n <= (1 << 29) // (256 * 256 * 700)


# --- the journal is the truth ----------------------------------------------------------------

def _status(runner, out):
    r = runner.invoke(app, ["status", str(out), "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _four(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        _gray(src / f"p{i}.png")
    return src


def test_journal_damage_is_reported_once_and_repaired_by_the_next_run(runner, tmp_path, tiny_weights):
    src, out = _four(tmp_path), tmp_path / "out"
    r, rep = _run(runner, src, "-o", out, "--model", tiny_weights)
    assert rep["done"] == 4
    journal = out / "journal.jsonl"
    lines = journal.read_bytes().split(b"\n")
    lines[2] = lines[2][:10] + b"\x00\xff\xfe junk \x80" + lines[3][20:]  # two item lines become one damaged one
    del lines[3]
    journal.write_bytes(b"\n".join(lines))
    s = _status(runner, out)
    assert s["done"] == 2 and s["pending"] == 2 and len(s["torn_lines"]) == 1
    r, rep = _run(runner, src, "-o", out, "--model", tiny_weights)
    assert r.exit_code == 0 and rep["skipped_existing"] == 4, r.output
    assert sum("damaged line(s) ignored" in w for w in rep["warnings"]) == 1
    s = _status(runner, out)
    assert s["done"] == 4 and s["pending"] == 0 and s["torn_lines"] == []  # status now says what colorize said
    r, rep = _run(runner, src, "-o", out, "--model", tiny_weights)
    assert not any("damaged" in w for w in rep["warnings"])


def test_an_empty_journal_is_a_journal_and_a_rerun_fills_it(runner, tmp_path, tiny_weights):
    src, out = _four(tmp_path), tmp_path / "out"
    _run(runner, src, "-o", out, "--model", tiny_weights)
    (out / "journal.jsonl").write_bytes(b"")
    s = _status(runner, out)
    assert s["done"] == 0 and s["journals"] == ["journal.jsonl"]
    r, rep = _run(runner, src, "-o", out, "--model", tiny_weights)
    assert rep["skipped_existing"] == 4
    assert _status(runner, out)["done"] == 4


def test_a_run_is_in_the_journal_from_its_start(runner, tmp_path, tiny_weights, monkeypatch):
    import scgan_rt.pipeline as pipeline

    src, out = _four(tmp_path), tmp_path / "out"

    def killed(self, index, job):
        raise KeyboardInterrupt  # killed before the first item finished

    monkeypatch.setattr(pipeline._Run, "_step", killed)
    r, _ = _run(runner, src, "-o", out, "--model", tiny_weights)
    assert r.exit_code == 130
    s = _status(runner, out)
    assert s["planned"] == 4 and s["pending"] == 4 and s["done"] == 0


# --- streams ------------------------------------------------------------------------------------

def test_a_second_video_stream_is_warned_and_counted(runner, tmp_path, tiny_weights):
    import av

    frames = noisy_still(COFFEE, n=6, w=64, h=48)
    path = tmp_path / "two.mkv"
    with av.open(str(path), "w") as c:
        streams = [c.add_stream("libx264", rate=25) for _ in range(2)]
        for s in streams:
            s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for f in frames:
            for s in streams:
                c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="gray").reformat(format="yuv420p")))
        for s in streams:
            c.mux(s.encode(None))
    r, rep = _run(runner, path, "-o", tmp_path / "o.mkv", "--model", tiny_weights, "--backend", "torch")
    assert r.exit_code == 0, r.output
    assert rep["video_streams_dropped"] == 1
    assert any("1 more video stream(s) not kept" in w for w in rep["warnings"])
    with av.open(str(tmp_path / "o.mkv")) as c:
        assert len(c.streams.video) == 1


@pytest.mark.parametrize("segments, shards", [(5, 2), (1, 2), (7, 3), (3, 4), (16, 16)])
def test_film_segments_are_spread_within_one_of_an_equal_share(segments, shards):
    from scgan_rt.journal import Shard

    for film in ("film.mp4", "reel 2/b.mkv", "x.mp4"):
        counts = [sum(Shard(k, shards).owns_segment(film, i) for i in range(segments)) for k in range(1, shards + 1)]
        assert sum(counts) == segments and max(counts) - min(counts) <= 1, counts


def test_names_with_control_characters_are_printed_escaped(runner, tmp_path, tiny_weights):
    src = tmp_path / "in"
    src.mkdir()
    _gray(src / "two\nlines.png")
    r = runner.invoke(app, ["colorize", str(src), "-o", str(tmp_path / "out"), "--model", str(tiny_weights)])
    assert r.exit_code == 0, r.output
    assert "two\\nlines.png" in r.stdout and "two\nlines" not in r.stdout
