"""Loss terms of the paper (eqs. 1-6) and the Table II ablations.

All images are in [-1, 1]; saliency maps in [0, 1] broadcast over the RGB channels.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from scgan_rt.color import ciede2000, colorfulness, rgb_to_lab, with_luma_of
from scgan_rt.errors import ModelError, UsageError
from scgan_rt.weights import read_state_dict

VGG16_URL_FILE = "vgg16-397923af.pth"  # torchvision's IMAGENET1K_V1 file name in the hub cache
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pixel_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Eq. 1 (L1); ``l2`` is the Table II ablation."""
    return F.l1_loss(pred, target) if kind == "l1" else F.mse_loss(pred, target)


def attention_loss(pred: torch.Tensor, pred_sal: torch.Tensor, target: torch.Tensor, sal: torch.Tensor,
                   kind: str = "l1") -> torch.Tensor:
    """Eq. 2: L1(G_c(x) * G_s(x), c * s). This is the only supervision of the saliency
    branch (as in the authors' code): it learns where colour errors matter."""
    return pixel_loss(pred * pred_sal, target * sal, kind)


def gradient_penalty(critic: nn.Module, gray: torch.Tensor, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): E[(||grad_x D(gray, x)||_2 - 1)^2] at x on random
    lines between real and fake; one alpha per sample; gradient w.r.t. the image only,
    the gray condition passed unchanged (as in the authors' code)."""
    alpha = torch.rand(real.size(0), 1, 1, 1, device=real.device, dtype=real.dtype)
    x = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = critic(gray, x)
    (grad,) = torch.autograd.grad(out, x, grad_outputs=torch.ones_like(out), create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def critic_loss(critic: nn.Module, gray: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
                mode: str = "wgangp", lambda_gp: float = 10.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Discriminator loss for one critic (eq. 4 is the sum over D_c and D_A). Real and
    fake go through separate forward passes, as the authors do (separate BN stats)."""
    d_real = critic(gray, real)
    d_fake = critic(gray, fake.detach())
    if mode == "wgangp":
        gp = gradient_penalty(critic, gray, real, fake)
        wdist = d_real.mean() - d_fake.mean()
        return -wdist + lambda_gp * gp, {"wdist": wdist.item(), "gp": gp.item()}
    # LSGAN (Table II ablation): least squares to 1 (real) / 0 (fake), halved as in the code.
    loss = 0.5 * (F.mse_loss(d_real, torch.ones_like(d_real)) + F.mse_loss(d_fake, torch.zeros_like(d_fake)))
    return loss, {}


def generator_adv_loss(critic: nn.Module, gray: torch.Tensor, fake: torch.Tensor, mode: str = "wgangp") -> torch.Tensor:
    """Eq. 3 for one critic: -E[D(fake)] (WGAN) or LSGAN's MSE to 1."""
    d = critic(gray, fake)
    return -d.mean() if mode == "wgangp" else F.mse_loss(d, torch.ones_like(d))


def _vgg16_features() -> nn.Sequential:
    from torchvision.models import vgg16

    return vgg16(weights=None).features[:16]  # conv1_1 ... conv3_3 + ReLU (index 15)


def find_vgg_weights(path: str | Path | None) -> Path:
    """``--perceptual-weights`` if given, else torchvision's file in the local hub cache."""
    if path:
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"--perceptual-weights not found: {p}")
        return p
    cached = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_URL_FILE
    if cached.is_file():
        return cached
    raise UsageError(f"perceptual loss needs ImageNet VGG-16 weights (not downloadable here): put torchvision's "
                     f"{VGG16_URL_FILE} in {cached.parent}, pass --perceptual-weights PATH, use "
                     f"--perceptual-net efficientnet-lite0, or pass --no-perceptual")


class PerceptualLoss(nn.Module):
    """Eq. 5: L1 between VGG-16 relu3_3 features (the paper: ReLU-activated conv3_3; the
    authors' code stops before the ReLU). Inputs in [-1,1] are mapped to ImageNet
    normalisation, which is what the pretrained VGG expects. Frozen, no BN/dropout."""

    def __init__(self, weights: str | Path | None = None) -> None:
        super().__init__()
        self.net = _vgg16_features()
        p = find_vgg_weights(weights)
        sd = read_state_dict(p, "perceptual weights")
        # Accept torchvision's full vgg16 state dict ("features.N.*") or a bare features dict.
        sd = {k.removeprefix("features."): v for k, v in sd.items() if not k.startswith("classifier.")}
        own = self.net.state_dict()
        missing = [k for k in own if k not in sd]
        if missing:
            raise ModelError(f"{p.name} is not a VGG-16 state dict (missing {', '.join(missing[:3])})")
        self.net.load_state_dict({k: sd[k] for k in own}, strict=True)
        self.net.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> "PerceptualLoss":
        super().train(mode)
        self.net.eval()  # always frozen
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(((x + 1) / 2 - self.mean) / self.std)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ft = self.features(target)
        return F.l1_loss(self.features(pred), ft)


class EfficientNetPerceptualLoss(nn.Module):
    """Eq. 5 with the frozen ImageNet EfficientNet-Lite0 in place of VGG-16 (no VGG file is
    reachable offline): mean L1 over its /4, /8 and /16 feature maps, each divided by its
    mean absolute value on the target so no level dominates. BN in eval mode, no gradients
    into the network's weights."""

    LEVELS = (1, 2, 3)  # indices into EfficientNetLite.features: /4, /8, /16

    def __init__(self) -> None:
        super().__init__()
        from scgan_rt.backbone import EfficientNetLite, load_pretrained

        self.net = load_pretrained(EfficientNetLite()).requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "EfficientNetPerceptualLoss":
        super().train(mode)
        self.net.eval()
        return self

    def _feats(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats, _ = self.net.features(x, head=False)
        return [feats[i] for i in self.LEVELS]

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ft = self._feats(target)
        fp = self._feats(pred)
        return sum(F.l1_loss(a, b) / (b.abs().mean() + 1e-6) for a, b in zip(fp, ft)) / len(ft)


def build_perceptual(net: str, weights: str | Path | None) -> nn.Module:
    """The perceptual loss of ``TrainConfig.perceptual_net``."""
    return EfficientNetPerceptualLoss() if net == "efficientnet-lite0" else PerceptualLoss(weights)


def ciede_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean CIEDE2000 (Lab units) between ``pred`` with ``target``'s luma put back and
    ``target``, both ``N x 3 x H x W`` in [-1, 1]: the colour error of what colorize ships."""
    merged = with_luma_of(pred.float(), target.float())
    lab = [rgb_to_lab((x + 1) / 2) for x in (merged, target.float())]
    return ciede2000(lab[0], lab[1], eps=1e-4).mean()


def colorfulness_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """|CF(pred) - CF(truth)| on the 0-1 scale (the 0-255 figure / 255): pulls a washed-out
    prediction towards the truth's colourfulness and, unlike DDColor's 1 - CF, never rewards
    more colour than the photo has."""
    cf = [colorfulness((x.float() + 1) * 127.5, eps=1e-3) / 255 for x in (pred, target)]
    return (cf[0] - cf[1]).abs().mean().float()
