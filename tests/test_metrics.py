"""PSNR/SSIM cross-checked against scikit-image; CCI per Hasler & Suesstrunk."""
import numpy as np
import pytest
from PIL import Image

from scgan_rt.metrics import CCI_RANGE, cci, evaluate, psnr, ssim


@pytest.fixture
def pair(photos_dir):
    gt = np.asarray(Image.open(photos_dir / "skimage__astronaut.jpg").convert("RGB").resize((256, 256)),
                    dtype=np.float64) / 255
    gray = gt @ np.array([0.299, 0.587, 0.114])
    return gt, np.repeat(gray[..., None], 3, 2)


def test_psnr_ssim_match_scikit_image(pair):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    gt, base = pair
    assert psnr(base, gt) == pytest.approx(peak_signal_noise_ratio(gt, base, data_range=1.0), abs=1e-9)
    for dr in (1.0, 2.0):
        assert ssim(base, gt, dr) == pytest.approx(structural_similarity(gt, base, channel_axis=2, data_range=dr),
                                                   abs=1e-9)
    # The authors' implicit data_range=2 inflates SSIM (reference doc §7).
    assert ssim(base, gt, 2.0) > ssim(base, gt, 1.0)


def test_cci_gray_is_zero_and_colour_is_not(pair):
    gt, base = pair
    assert cci(base) == 0.0
    assert cci(gt) > 20
    assert CCI_RANGE == (16.0, 20.0)


def test_evaluate_identity_model_beats_baseline(photos_dir):
    """A cheating 'model' that returns the ground truth must score inf PSNR, SSIM 1, and the
    ground truth's own CCI; the baseline is scored on the same photos."""
    cache = {}

    def oracle(gray):
        return cache["gt"]

    import scgan_rt.metrics as m
    orig = m.load_eval_photo

    def load(path, size=256):
        cache["gt"] = orig(path, size)
        return cache["gt"]

    m.load_eval_photo = load
    try:
        res = evaluate(photos_dir, oracle)
    finally:
        m.load_eval_photo = orig
    assert res["model"]["ssim"] == pytest.approx(1.0)
    assert res["model"]["cci_mean"] == pytest.approx(res["ground_truth_cci_mean"], abs=1e-3)
    assert res["grayscale_baseline"]["ssim"] < 1.0


def test_ciede2000_matches_sharma_reference_pairs():
    """Sharma, Wu & Dalal (2005) test data: pairs 1, 2, 7, 14 and 34 of their table."""
    from scgan_rt.metrics import ciede2000

    pairs = [((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
             ((50.0, 3.1571, -77.2803), (50.0, 0.0, -82.7485), 2.8615),
             ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
             ((50.0, 2.5, 0.0), (50.0, 0.0, -2.5), 4.3065),
             ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373)]
    for a, b, want in pairs:
        assert float(ciede2000(np.array(a), np.array(b))) == pytest.approx(want, abs=1e-4)


def test_hue_hit_rate_counts_clearly_coloured_pixels_only():
    from scgan_rt.metrics import hue_hits, lab_of

    truth = np.zeros((2, 2, 3))
    truth[0] = [0.8, 0.1, 0.1]  # red: counted
    truth[1] = [0.5, 0.5, 0.5]  # gray: not counted
    pred = truth.copy()
    pred[0, 1] = [0.1, 0.1, 0.8]  # blue where red: a miss
    assert hue_hits(lab_of(pred), lab_of(truth)) == (1, 2)
    gray = np.repeat(truth.mean(-1, keepdims=True), 3, -1)
    assert hue_hits(lab_of(gray), lab_of(truth)) == (0, 2)
