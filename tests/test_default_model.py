"""The model shipped inside the package: it loads, describes itself, is deterministic, adds
real colour to the bundled photos, and meets its colour-accuracy targets on the held-out
validation split."""
import json
from pathlib import Path

import numpy as np
import pytest

from scgan_rt.backends.torch import TorchBackend
from scgan_rt.cli import app
from scgan_rt.images import load_image
from scgan_rt.metrics import cci
from scgan_rt.model import count_parameters
from scgan_rt.colorizer import Colorizer
from scgan_rt.weights import bundled_models, default_weights, describe, load_generator, read_weights, resolve_weights

SHARED_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "train_512"
VAL_SPLIT = Path(__file__).resolve().parents[1] / "train" / "recipes" / "default_val_split.txt"


@pytest.fixture(scope="module")
def default():
    path = default_weights()
    assert path is not None and path.is_file(), "the package must ship its default model"
    return path


def test_default_model_loads_with_complete_metadata(default):
    gen, w = load_generator(default)
    d = describe(w)
    assert d["preset"] == "scgan-prior" and count_parameters(gen) <= 8_000_000
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
    # Measured 29.2 for scgan-prior-v3 (v2: 27.9) with the default settings (gray: 0, random init: ~1.4).
    assert np.mean(scores) >= 10.0, scores


def test_info_names_the_default_model(runner):
    r = runner.invoke(app, ["info", "--json"])
    d = json.loads(r.stdout)
    assert d["default_model"]["preset"] == "scgan-prior"


def test_the_previous_defaults_stay_reachable_by_name():
    models = bundled_models()
    assert list(models) == ["scgan-prior-v3", "scgan-prior-v2", "scgan-prior-v1", "scgan-lite-v1"]
    assert resolve_weights("scgan-prior") == resolve_weights("default") == models["scgan-prior-v3"]
    for old in ("scgan-prior-v2", "scgan-prior-v1"):
        assert read_weights(models[old]).config.preset == "scgan-prior"
    assert read_weights(models["scgan-lite-v1"]).config.preset == "scgan-lite"
    old, _ = load_generator(resolve_weights("scgan-lite"))  # the old preset name still finds it
    assert count_parameters(old) == 3_677_984


@pytest.fixture(scope="module")
def validation(tmp_path_factory):
    """The held-out validation split (train/recipes/default_val_split.txt) of the shared photos."""
    if not SHARED_PHOTOS.is_dir():
        pytest.skip("the shared data set (../shared) is not on this machine")
    names = [line for line in VAL_SPLIT.read_text().splitlines() if line and not line.startswith("#")]
    folder = tmp_path_factory.mktemp("val")
    for n in names:
        (folder / n).symlink_to(SHARED_PHOTOS / n)
    assert len(names) == 25
    from scgan_rt.metrics import evaluate

    col = Colorizer(TorchBackend(default_weights(), device="cpu"), size=256)
    return evaluate(folder, lambda g: col.colorize_batch([_gray_image(folder, g)])[0][0], size=256)


def _gray_image(folder, gray):
    from scgan_rt.images import LoadedImage

    return LoadedImage(folder, gray, None, 8, "L", "", False)


# The bars on the validation split. A bar the shipped model misses is marked with
# what was measured (strict: the mark must go when a model meets it); see the model card.
MISSED: dict[str, str] = {}
TARGETS = {
    "psnr": lambda m, g, t: m["psnr"] >= g["psnr"] + 1.0,
    "ssim": lambda m, g, t: m["ssim"] >= g["ssim"],
    "cci": lambda m, g, t: m["cci_mean"] >= 0.6 * t,
    "hue_hit_rate": lambda m, g, t: m["hue_hit_rate"] >= 0.6,
    "ciede2000": lambda m, g, t: m["ciede2000"] <= g["ciede2000"] - 2.0,
}


@pytest.mark.parametrize("target", [pytest.param(k, marks=pytest.mark.xfail(reason=MISSED[k], strict=True))
                                    if k in MISSED else k for k in TARGETS])
def test_default_model_meets_its_targets_on_the_validation_split(validation, target):
    """PSNR >= gray + 1 dB, SSIM >= gray, mean CCI >= 60 % of the truth's, hue hit rate >= 60 %,
    CIEDE2000 at least 2.0 below gray's."""
    m, g = validation["model"], validation["grayscale_baseline"]
    assert TARGETS[target](m, g, validation["ground_truth_cci_mean"]), (target, m, g)


def test_chroma_smoothing_brings_every_bundled_photo_closer_to_its_truth(photos_dir):
    """The default low-pass on the predicted chroma: higher SSIM and lower CIEDE2000 against
    the real colours on each bundled photo, the luminance untouched, the colour kept (a
    low-pass, not a desaturation)."""
    from scgan_rt.color import luma_of
    from scgan_rt.metrics import lab_of, load_eval_photo, photo_scores
    from scgan_rt.settings import InferConfig

    assert InferConfig().chroma_smoothing > 0
    on, off = Colorizer.open(), Colorizer.open(chroma_smoothing=0)
    for f in sorted(photos_dir.glob("*.jpg")):
        truth = load_eval_photo(f)
        gray = luma_of(truth)
        outs = [c.colorize_batch([_gray_image(f, gray)])[0][0] for c in (on, off)]
        (_, ssim_on, _, cci_on, de_on, *_), (_, ssim_off, _, cci_off, de_off, *_) = (
            photo_scores(o, truth, lab_of(truth)) for o in outs)
        assert ssim_on > ssim_off and de_on < de_off, (f.name, ssim_on, ssim_off, de_on, de_off)
        assert cci_on > 0.85 * cci_off, f.name
        for o in outs:
            assert np.abs(luma_of(o) - gray).max() < 1e-5
