"""End-to-end CLI checks: real photos in, full-resolution colour out, and every bad-input
case of the foundation issue (one-line error, documented exit code, nothing lost)."""
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scgan_rt.cli import app
from scgan_rt.errors import EXIT_BAD_INPUT, EXIT_BAD_MODEL, EXIT_PARTIAL, EXIT_RESOURCE, EXIT_USAGE
from png16 import read_png16

from conftest import TINY, make_png_bomb, outputs, sha


def _luma(a):
    return a[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


@pytest.fixture
def gray_tree(tmp_path, photos_dir):
    """Gray PNG copies of real photos in a nested tree (plus one colour photo)."""
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    for i, f in enumerate(sorted(photos_dir.glob("*.jpg"))[:3]):
        Image.open(f).convert("L").save((root / ("sub" if i else "")) / f"{f.stem}.png")
    shutil.copy(photos_dir / "skimage__chelsea.jpg", root / "colour.jpg")
    return root


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in outputs(folder))


def test_colorize_tree_full_resolution_and_luminance(runner, tiny_weights, gray_tree, tmp_path):
    out = tmp_path / "out"
    before = {f: sha(gray_tree / f) for f in _files(gray_tree)}
    r = runner.invoke(app, ["colorize", str(gray_tree), "-o", str(out), "--model", str(tiny_weights), "--json",
                            "--save-saliency", "--batch-size", "2"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    assert summary["done"] == 4 and summary["failed"] == []
    assert {f: sha(gray_tree / f) for f in _files(gray_tree)} == before  # inputs untouched
    for src in gray_tree.rglob("*.png"):
        dst = out / src.relative_to(gray_tree)
        a_in = np.asarray(Image.open(src), dtype=np.float64)
        a_out = np.asarray(Image.open(dst).convert("RGB"))
        assert a_out.shape[:2] == a_in.shape  # exactly the input's size
        assert np.abs(_luma(a_out) - a_in).max() <= 1.0  # luminance kept within rounding
        assert dst.with_name(dst.stem + "_saliency.png").exists()
    assert (out / "colour.jpg").exists()
    assert not list(out.rglob("*.partial*"))


def test_skip_existing_overwrite_and_skip_color(runner, tiny_weights, gray_tree, tmp_path):
    out = tmp_path / "out"
    args = ["colorize", str(gray_tree), "-o", str(out), "--model", str(tiny_weights), "--json"]
    assert runner.invoke(app, args).exit_code == 0
    stamp = sha(out / "colour.jpg")
    r = runner.invoke(app, args)
    s = json.loads(r.stdout[r.stdout.index("{"):])
    assert s["done"] == 0 and s["skipped_existing"] == 4
    r = runner.invoke(app, args + ["--overwrite", "--skip-color"])
    s = json.loads(r.stdout[r.stdout.index("{"):])
    assert s["done"] == 3 and s["skipped_color"] == 1
    assert sha(out / "colour.jpg") == stamp


def test_rgba_alpha_and_16bit_preserved(runner, tiny_weights, tmp_path, photos_dir):
    src = tmp_path / "in"
    src.mkdir()
    im = Image.open(photos_dir / "skimage__coffee.jpg").convert("L").resize((300, 200))
    rgba = im.convert("RGBA")
    alpha = Image.linear_gradient("L").resize(im.size)
    rgba.putalpha(alpha)
    rgba.save(src / "a.png")
    Image.fromarray((np.asarray(im, dtype=np.uint16) * 257)).save(src / "deep.png")
    out = tmp_path / "out"
    r = runner.invoke(app, ["colorize", str(src), "-o", str(out), "--model", str(tiny_weights)])
    assert r.exit_code == 0, r.output
    a = Image.open(out / "a.png")
    assert a.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(a)[..., 3], np.asarray(alpha))
    deep = read_png16(out / "deep.png")
    assert deep.dtype == np.uint16 and deep.shape == (200, 300, 3)
    lum = _luma(deep.astype(np.float64))
    assert np.abs(lum - np.asarray(im, dtype=np.float64) * 257).max() <= 2.0  # 16-bit rounding


@pytest.mark.parametrize("case", ["truncated_jpeg", "text_as_jpg", "zero_byte", "bomb"])
def test_bad_single_input(runner, tiny_weights, tmp_path, photos_dir, case):
    p = tmp_path / ("x.png" if case == "bomb" else "x.jpg")
    data = (photos_dir / "skimage__coffee.jpg").read_bytes()
    if case == "truncated_jpeg":
        p.write_bytes(data[: len(data) // 2])
    elif case == "text_as_jpg":
        p.write_text("hello, I am text\n")
    elif case == "zero_byte":
        p.write_bytes(b"")
    else:
        make_png_bomb(p)
    before = p.read_bytes()
    out = tmp_path / "out"
    r = runner.invoke(app, ["colorize", str(p), "-o", str(out), "--model", str(tiny_weights)])
    assert r.exit_code == EXIT_BAD_INPUT, r.output
    assert "Traceback" not in r.output
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith("failed:")]) == 1
    assert p.read_bytes() == before
    assert not outputs(out)


def test_batch_with_one_bad_file_is_partial(runner, tiny_weights, gray_tree, tmp_path):
    (gray_tree / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    r = runner.invoke(app, ["colorize", str(gray_tree), "-o", str(tmp_path / "o"), "--model", str(tiny_weights)])
    assert r.exit_code == EXIT_PARTIAL
    assert "broken.jpg" in r.stderr
    assert len(outputs(tmp_path / "o", "*.*")) == 4


def test_missing_and_unreadable_inputs(runner, tiny_weights, tmp_path, monkeypatch, photos_dir):
    r = runner.invoke(app, ["colorize", str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "o"),
                            "--model", str(tiny_weights)])
    assert r.exit_code == EXIT_BAD_INPUT and "not found" in r.stderr
    assert not (tmp_path / "o").exists()
    # Root ignores file modes, so simulate a permission-denied input.
    p = tmp_path / "locked.jpg"
    shutil.copy(photos_dir / "skimage__coffee.jpg", p)
    import scgan_rt.images as images
    real = images.os.access
    monkeypatch.setattr(images.os, "access", lambda q, m: False if Path(q) == p else real(q, m))
    r = runner.invoke(app, ["colorize", str(p), "-o", str(tmp_path / "o"), "--model", str(tiny_weights)])
    assert r.exit_code == EXIT_BAD_INPUT and "permission denied" in r.stderr, r.output


def test_unwritable_output_fails_before_work(runner, tiny_weights, gray_tree, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = runner.invoke(app, ["colorize", str(gray_tree), "-o", str(blocker / "out"), "--model", str(tiny_weights)])
    assert r.exit_code == EXIT_RESOURCE, r.output
    assert "cannot create output folder" in r.stderr and "Traceback" not in r.output


def test_output_equal_to_input_is_refused(runner, tiny_weights, gray_tree):
    src = next(gray_tree.glob("*.png"))
    before = sha(src)
    r = runner.invoke(app, ["colorize", str(src), "-o", str(src.parent), "--model", str(tiny_weights)])
    assert r.exit_code == EXIT_USAGE and "overwrite input" in r.stderr
    assert sha(src) == before


def test_bad_weights(runner, tiny_weights, gray_tree, tmp_path):
    from scgan_rt.model import build_generator
    from safetensors.torch import load_file, save_file

    wrong = tmp_path / "wrong.safetensors"
    meta = {"format": "scgan-rt-generator", "config": TINY.__class__(preset="x", width=1 / 8).to_json()}
    save_file(load_file(str(tiny_weights)), str(wrong), metadata=meta)

    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    evil = tmp_path / "evil.safetensors"
    torch.save({"generator": Evil(), "config": TINY.to_json()}, evil)
    for w, msg in ((wrong, "does not match"), (evil, "refusing to load")):
        r = runner.invoke(app, ["colorize", str(gray_tree), "-o", str(tmp_path / "o"), "--model", str(w)])
        assert r.exit_code == EXIT_BAD_MODEL, r.output
        assert msg in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "pwned").exists()
    assert not outputs(tmp_path / "o", "*.*")


def test_usage_errors(runner, tiny_weights, gray_tree, tmp_path):
    r = runner.invoke(app, ["colorize", str(gray_tree), "-o", str(tmp_path / "o"), "--model", str(tiny_weights),
                            "--size", "300"])
    assert r.exit_code == EXIT_USAGE and "multiple of 256" in r.stderr


def test_model_init_info_and_evaluate(runner, tmp_path, photos_dir, tiny_weights):
    w = tmp_path / "lite.safetensors"
    r = runner.invoke(app, ["model", "init", "--preset", "scgan-lite", "-o", str(w), "--seed", "1"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["model", "info", str(w), "--json"])
    d = json.loads(r.stdout)
    assert d["preset"] == "scgan-lite" and d["parameters"] == 3_677_984
    assert 11 < d["gflops_per_frame_with_saliency"] < 13 and d["gflops_per_frame"] < d["gflops_per_frame_with_saliency"]
    r = runner.invoke(app, ["evaluate", str(photos_dir), "--model", str(tiny_weights), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["images"] == len(list(photos_dir.glob("*.jpg")))
    for key in ("model", "grayscale_baseline"):
        assert set(res[key]) == {"psnr", "ssim", "ssim_dr2", "cci_mean", "cci_ratio", "ciede2000", "hue_hit_rate"}
    gray = res["grayscale_baseline"]
    assert gray["cci_mean"] == 0.0 and gray["hue_hit_rate"] == 0.0 and gray["ciede2000"] > 1
    r = runner.invoke(app, ["info", "--json"])
    assert r.exit_code == 0 and "backends" in json.loads(r.stdout)


def test_colorize_help_reads_at_80_columns():
    """The help a new user sees in an 80-column terminal: grouped, short, nothing cut or eaten."""
    import re
    import subprocess
    import sys

    from scgan_rt.backends import names

    env = dict(os.environ, COLUMNS="80", TERMINAL_WIDTH="80")
    r = subprocess.run([sys.executable, "-m", "scgan_rt", "colorize", "--help"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.rstrip().splitlines()
    assert len(lines) <= 110 and max(len(line) for line in lines) <= 80, len(lines)
    text = r.stdout
    usage = next(line for line in lines if "Usage:" in line)
    assert "INPUT..." in usage and "{" not in usage
    for panel in ("Input and output", "Model and device", "Colour", "Video", "Large jobs", "GPU"):
        assert f"─ {panel}" in text, panel
    for metavar in ("NAME|FILE", "auto|N", "CODEC", "K/N"):
        assert metavar in text, metavar
    assert not re.search(r"\bSTR\b", text)  # no bare type placeholders
    for word in [*names(), "libvpx-vp9", "NAME_compare.EXT", "scgan-rt[ray]"]:
        assert word in text, word  # never wrapped mid-word, never eaten as markup


def test_progress_lines_when_stderr_is_not_a_terminal(runner, tiny_weights, gray_tree, tmp_path):
    """A log (nohup, cron, a cluster job) gets plain lines: done/planned, this run's rate, ETA."""
    import re

    args = ["colorize", str(gray_tree), "-o", str(tmp_path / "out"), "--model", str(tiny_weights)]
    r = runner.invoke(app, [*args, "--progress-every", "0.000001"])
    assert r.exit_code == 0, r.output
    lines = re.findall(r"colorizing \(\w+\): (\d)/4, ([\d.]+) files/s, ETA ([0-9hms]+)\b", r.output)
    assert [int(d) for d, _, _ in lines] == [1, 2, 3, 4], r.output
    assert "\x1b[" not in r.output  # plain text, no terminal codes
    r = runner.invoke(app, [*args, "--overwrite", "--progress-every", "0"])
    assert r.exit_code == 0 and "colorizing (" not in r.output, r.output


def test_train_without_the_train_extra_names_the_command(runner, tmp_path, monkeypatch):
    """A lean (colorize-only) install: TensorBoard lives in the `train` extra, which `dev` includes."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    meta = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("tensorboard") for d in meta["dependencies"])
    assert any(d.startswith("tensorboard") for d in meta["optional-dependencies"]["train"])
    assert "scgan-rt[train]" in meta["optional-dependencies"]["dev"]
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    r = runner.invoke(app, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run")])
    assert r.exit_code == 2, r.output
    assert " ".join(r.output.split()) == "error: training needs tensorboard (the train extra): pip install 'scgan-rt[train]'"
