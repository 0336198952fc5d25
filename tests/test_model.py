import pytest
import torch

from scgan_rt.config import PRESETS, ModelConfig, preset
from scgan_rt.errors import UsageError
from scgan_rt.model import (PatchDiscriminator, build_generator, count_parameters, fold_for_inference,
                            gflops_per_frame)

from conftest import TINY


def test_paper_generator_has_58_755_200_parameters():
    gen = build_generator(preset("scgan"))
    assert count_parameters(gen) == 58_755_200
    assert count_parameters(gen.gfn) == 17_077_952
    assert count_parameters(gen.saliency) == 1_624_448
    # One discriminator of the paper's pair: matches the authors' PatchGAN.
    assert count_parameters(PatchDiscriminator(preset("scgan"))) == 5_766_144


def test_lite_preset_is_small_and_same_topology():
    lite, full = build_generator(preset("scgan-lite")), build_generator(preset("scgan"))
    assert count_parameters(lite) <= 4_000_000
    assert [n for n, _ in lite.named_modules()] == [n for n, _ in full.named_modules()]


def test_shapes_ranges_and_discriminators():
    gen = build_generator(TINY, seed=0).eval()
    x = torch.rand(2, 1, 256, 256) * 2 - 1
    with torch.no_grad():
        rgb, sal = gen(x)
    assert rgb.shape == (2, 3, 256, 256) and sal.shape == (2, 1, 256, 256)
    assert rgb.abs().max() <= 1 and 0 <= sal.min() and sal.max() <= 1
    assert gen.gfn(x).shape == (2, TINY.ch(512), 8, 8)  # 512x8x8 at 256 in the paper
    d = PatchDiscriminator(TINY)
    assert d(x, rgb).shape == (2, 1, 30, 30)
    # Spectral norm on every discriminator conv, none on the generator (paper §IV-A).
    assert all(hasattr(m, "parametrizations") for m in d.modules() if isinstance(m, torch.nn.Conv2d))
    assert not any(hasattr(m, "parametrizations") for m in gen.modules() if isinstance(m, torch.nn.Conv2d))


def test_eval_mode_is_batch_independent():
    """The authors ran BatchNorm in train mode at test time; eval mode must make an image's
    colours independent of what else is in the batch."""
    gen = build_generator(TINY, seed=0)
    gen.train()
    with torch.no_grad():
        gen(torch.rand(4, 1, 256, 256) * 2 - 1)  # non-trivial running stats
    gen.eval()
    a = torch.rand(1, 1, 256, 256) * 2 - 1
    b = torch.rand(1, 1, 256, 256) * 2 - 1
    with torch.no_grad():
        alone = gen(a)[0]
        batched = gen(torch.cat([a, b]))[0][:1]
    torch.testing.assert_close(alone, batched, atol=1e-5, rtol=0)


def test_fold_for_inference_matches_eval_and_removes_sn_and_bn():
    cfg = ModelConfig(preset="t", width=1 / 16, g_spectral_norm=True)
    gen = build_generator(cfg, seed=1)
    gen.train()
    with torch.no_grad():
        gen(torch.rand(2, 1, 256, 256) * 2 - 1)
    gen.eval()
    x = torch.rand(1, 1, 256, 256) * 2 - 1
    with torch.no_grad():
        ref = gen(x)[0]
        folded = fold_for_inference(gen)
        got = folded(x)[0]
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert not any(hasattr(m, "parametrizations") for m in folded.modules())


def test_gflops_scale_with_width():
    g_lite = gflops_per_frame(build_generator(preset("scgan-lite")))
    g_tiny = gflops_per_frame(build_generator(TINY))
    assert 10 < g_lite < 14 and g_tiny < g_lite / 10


def test_config_validation():
    with pytest.raises(UsageError):
        preset("nope")
    with pytest.raises(UsageError):
        preset("scgan", width=0)
    assert set(PRESETS) == {"scgan", "scgan-lite", "scgan-prior"}
    assert ModelConfig.from_json(PRESETS["scgan-lite"].to_json()) == PRESETS["scgan-lite"]
