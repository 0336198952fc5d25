"""The model shipped inside the package: it loads, describes itself, is deterministic, and
adds real colour to the bundled photos."""
import json

import numpy as np
import pytest

from scgan_rt.backends.torch import TorchBackend
from scgan_rt.cli import app
from scgan_rt.images import load_image
from scgan_rt.metrics import cci
from scgan_rt.model import count_parameters
from scgan_rt.colorizer import Colorizer
from scgan_rt.weights import default_weights, describe, load_generator, read_weights


@pytest.fixture(scope="module")
def default():
    path = default_weights()
    assert path is not None and path.is_file(), "the package must ship its default model"
    return path


def test_default_model_loads_with_complete_metadata(default):
    gen, w = load_generator(default)
    d = describe(w)
    assert d["preset"] == "scgan-lite" and count_parameters(gen) == 3_677_984
    prov = d["provenance"]
    for key in ("recipe", "training_data", "validation", "stages", "ablations", "seed", "compute", "summary"):
        assert key in prov, key
    assert prov["validation"]["photos"] >= 20
    assert not gen.training


def test_default_model_is_deterministic(default, photos_dir):
    col = Colorizer(TorchBackend(default, device="cpu"), size=256)
    im = load_image(photos_dir / "skimage__chelsea.jpg")
    a = col.colorize_batch([im])[0][0]
    b = col.colorize_batch([im])[0][0]
    np.testing.assert_array_equal(a, b)
    assert a.shape == (300, 451, 3)


def test_default_model_adds_colour_to_bundled_photos(default, photos_dir):
    """Mean CCI of the outputs on the bundled photos must clear a real bar (gray is 0)."""
    col = Colorizer(TorchBackend(default, device="cpu"), size=256)
    scores = [cci(col.colorize_batch([load_image(f)])[0][0]) for f in sorted(photos_dir.glob("*.jpg"))]
    # Measured 16.7 for the shipped model (gray: 0, random init: ~1.4).
    assert np.mean(scores) >= 10.0, scores


def test_info_names_the_default_model(runner):
    r = runner.invoke(app, ["info", "--json"])
    d = json.loads(r.stdout)
    assert d["default_model"]["preset"] == "scgan-lite"
