"""The inference layer's seams: backend registry (a backend from one file), settings
checked once, the public Python API, and the CLI details users tripped on."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import PHOTOS, SAMPLES, sha
from scgan_rt.cli import app
from scgan_rt.errors import UsageError
from scgan_rt.settings import InferConfig

FAKE_BACKEND = '''
import numpy as np
from scgan_rt.backends import BackendSpec, register


class Fake:
    name = "fake"
    with_saliency = False

    def __init__(self, device):
        self.device = device

    def infer(self, gray):
        # A fixed tint: the merge keeps the gray's luminance, so only the chroma shows it.
        rgb = np.concatenate([gray + 0.3, gray, gray - 0.3], axis=1)
        return np.clip(rgb, -1, 1).astype(np.float32), None


register(BackendSpec("fake", {"cpu": 1}, lambda kind: (True, "a test double"), lambda w, d, o: Fake(d)))
'''


def _cli(args, env_extra, **kw):
    env = dict(os.environ, **env_extra)
    return subprocess.run([sys.executable, "-m", "scgan_rt", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=240, **kw)


def test_a_backend_from_one_file_shows_in_info_help_backend_and_auto(tmp_path, tiny_weights):
    plugin = tmp_path / "fake_backend.py"
    plugin.write_text(FAKE_BACKEND)
    env = {"SCGAN_RT_BACKENDS": str(plugin)}
    info = json.loads(_cli(["info", "--json"], env).stdout)
    fake = next(b for b in info["backends"] if b["name"] == "fake")
    assert {k: fake[k] for k in ("usable", "reason", "backend", "kind")} == \
        {"usable": True, "reason": "a test double", "backend": "fake", "kind": "cpu"}
    assert info["backends"][0]["name"] == "fake"  # rank 1: first in the auto order
    assert "fake" in _cli(["colorize", "--help"], env, cwd=tmp_path).stdout
    src = PHOTOS / "skimage__coffee.jpg"
    for backend in ("fake", "auto"):
        out = tmp_path / f"{backend}.png"
        r = _cli(["colorize", src, "-o", out, "--model", tiny_weights, "--backend", backend, "--device", "cpu",
                  "--json"], env)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["backend"] == "fake"
        rgb = np.asarray(Image.open(out), dtype=np.float32)
        assert (rgb[..., 0] - rgb[..., 2]).mean() > 20  # the fake's red tint came through
    r = _cli(["colorize", src, "-o", tmp_path / "x.png", "--model", tiny_weights, "--backend", "fake",
              "--device", "cuda"], env)
    assert r.returncode == 2 and "runs on cpu" in r.stderr


@pytest.mark.parametrize("field,value,message", [
    ("backend", "openvino", "unknown backend 'openvino'; choose one of auto, "),
    ("device", "gpu", "--device must be auto, cpu, cuda or cuda:N"),
    ("device", "cuda:x", "--device must be"),
    ("size", 300, "--size must be a multiple of 256"),
    ("encoder_preset", "turbo", "--encoder-preset must be one of"),
])
def test_settings_are_checked_once_in_validate(field, value, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        InferConfig(**{field: value}).validate()


def test_public_api_photo_array_file_and_video(tmp_path):
    from scgan_rt import Colorizer

    c = Colorizer.open(model="default", backend="torch", device="cpu")
    img = Image.open(PHOTOS / "skimage__chelsea.jpg").convert("L")
    out = c.colorize(img)
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == img.size
    arr = c.colorize(np.asarray(img))
    assert arr.dtype == np.uint8 and arr.shape == (img.size[1], img.size[0], 3)
    assert np.array_equal(arr, np.asarray(out))
    # the luminance is the input's own
    y = np.asarray(out, dtype=np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    assert np.abs(y - np.asarray(img, np.float32)).mean() < 1.0
    src = PHOTOS / "skimage__rocket.jpg"
    before = sha(src)
    dst = c.colorize_file(src, tmp_path / "rocket.png")
    assert dst.is_file() and sha(src) == before
    rep = c.colorize_video(SAMPLES / "video" / "carphone_gray.mp4", tmp_path / "car.mp4")
    assert rep.frames_out > 0 and (tmp_path / "car.mp4").is_file()


def test_readme_api_example_runs(tmp_path):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert "Colorizer.open" in block
    subprocess.run([sys.executable, "-c", block], cwd=tmp_path, check=True, timeout=240)


def test_version_and_model_default_everywhere(runner, tmp_path):
    from scgan_rt import __version__

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and __version__ in r.stdout
    r = runner.invoke(app, ["model", "info", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["preset"] == "scgan-prior"
    for name in ("default", "scgan-prior", "scgan-prior-v3", "scgan-prior-v2", "scgan-prior-v1", "scgan-lite-v1", "scgan-lite"):
        r = runner.invoke(app, ["colorize", str(PHOTOS / "skimage__chelsea.jpg"), "-o", str(tmp_path / f"{name}.png"),
                                "--model", name, "--backend", "torch", "--device", "cpu"])
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["model", "info", "scgan"])
    assert r.exit_code == 4 and "no scgan weights are bundled" in r.output


def test_file_output_for_several_inputs_is_a_usage_error(runner, tmp_path, tiny_weights):
    r = runner.invoke(app, ["colorize", str(PHOTOS / "skimage__chelsea.jpg"), str(PHOTOS / "skimage__coffee.jpg"),
                            "-o", str(tmp_path / "x.png"), "--model", str(tiny_weights)])
    assert r.exit_code == 2 and "give a folder name" in r.output
    assert not (tmp_path / "x.png").exists()


def test_help_shows_choices_not_python_types():
    r = _cli(["colorize", "--help"], {"COLUMNS": "200"})
    assert "auto, tensorrt, onnxruntime or torch" in r.stdout and "auto, cpu, cuda or cuda:N" in r.stdout
    assert "list[" not in r.stdout and "<" not in r.stdout


def test_old_preset_flag_still_works_with_a_note(runner, tmp_path, tiny_weights):
    from clips import noisy_still, write_clip

    src = write_clip(tmp_path / "a.mp4", noisy_still(PHOTOS / "skimage__coffee.jpg", n=2, w=64, h=48))
    r = runner.invoke(app, ["colorize", str(src), "-o", str(tmp_path / "o.mp4"), "--model", str(tiny_weights),
                            "--preset", "ultrafast"])
    assert r.exit_code == 0, r.output
    assert "--preset is deprecated" in r.output and "--encoder-preset" in r.output


def test_preview_goes_to_a_folder_beside_the_video(runner, tmp_path, tiny_weights):
    from clips import noisy_still, write_clip

    src = write_clip(tmp_path / "clip.mp4", noisy_still(PHOTOS / "skimage__coffee.jpg", n=6, w=64, h=48))
    r = runner.invoke(app, ["colorize", str(src), "--preview", "2", "--model", str(tiny_weights)])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "clip_preview").iterdir()) == ["clip_preview_01.png",
                                                                             "clip_preview_02.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "clip_preview"]


def test_a_batch_too_big_for_the_device_is_split_not_fatal():
    import torch

    from scgan_rt.colorizer import Colorizer

    class Picky:
        name, device, with_saliency = "picky", "cpu", False
        calls: list[int] = []

        def infer(self, gray):
            self.calls.append(len(gray))
            if len(gray) > 3:  # what torch says when a kernel's indices overflow int32
                raise RuntimeError("input tensor must fit into 32-bit index math")
            return np.repeat(gray, 3, axis=1), None

    be = Picky()
    c = Colorizer(be)
    x = torch.linspace(-1, 1, 10 * 256 * 256).reshape(10, 1, 256, 256)
    rgb, _ = c.predict(x)
    assert rgb.shape == (10, 3, 256, 256) and torch.equal(rgb[:, 0:1], x)
    assert c.max_batch == 2
    be.calls.clear()
    c.predict(x)
    assert be.calls == [2, 2, 2, 2, 2]  # the size found is kept
    with pytest.raises(RuntimeError, match="something else"):
        class Broken(Picky):
            def infer(self, gray):
                raise RuntimeError("something else")
        Colorizer(Broken()).predict(x)


def test_openmp_spin_is_shortened_unless_the_user_chose():
    from scgan_rt.__main__ import OMP_SPIN, quiet_openmp

    env: dict[str, str] = {}
    quiet_openmp(env)
    assert env == {"GOMP_SPINCOUNT": OMP_SPIN}
    for mine in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "1000000"}):
        env = dict(mine)
        quiet_openmp(env)
        assert env == mine
    r = subprocess.run([sys.executable, "-c", "import os, scgan_rt.__main__ as m; m.quiet_openmp(os.environ); "
                        "import torch; print(os.environ['GOMP_SPINCOUNT'])"], capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")})
    assert r.stdout.strip() == OMP_SPIN


def test_no_import_cycle_between_cli_and_entry_point():
    """The entry point imports the CLI, never the other way round (zero import cycles)."""
    import grimp

    graph = grimp.build_graph("scgan_rt")
    assert graph.find_shortest_chain(importer="scgan_rt.__main__", imported="scgan_rt.cli") is not None
    assert graph.find_shortest_chain(importer="scgan_rt.cli", imported="scgan_rt.__main__") is None
