"""SCGAN networks (Zhao et al., TCSVT 2021), following the paper and the layer spec in
docs/decisions.md (derived from the authors' code, ``scgan_reference.md`` §1-2).

Generator: a VGG-16-Gray global feature network (max-pools replaced by stride-2 convs,
512x8x8 at 256 input) concatenated into the middle of a 9-level U-Net; a saliency branch
fed by three decoder levels. Inputs are gray in [-1, 1]; outputs are RGB through tanh in
[-1, 1] and a saliency map through sigmoid in [0, 1]. H and W must be multiples of 256
(eight stride-2 stages down to 1x1).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.nn.utils.parametrizations import spectral_norm

from .backbone import HEAD_CHANNELS, EfficientNetLite, feature_channels
from .config import ModelConfig


class ConvBlock(nn.Sequential):
    """Reflection pad -> conv (no bias) -> [norm] -> [activation], as in the authors' Conv2dLayer."""

    def __init__(self, cin: int, cout: int, k: int = 3, s: int = 1, *, pad: int | None = None,
                 norm: str = "bn", act: str = "lrelu", sn: bool = False, upsample: bool = False) -> None:
        layers: list[nn.Module] = []
        if upsample:
            # The authors' "TransposeConv2dLayer" is nearest x2 + conv, not a transposed conv.
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        p = k // 2 if pad is None else pad
        if p:
            layers.append(nn.ReflectionPad2d(p))
        conv = nn.Conv2d(cin, cout, k, s, padding=0, bias=False)
        layers.append(spectral_norm(conv) if sn else conv)
        if norm == "bn":
            layers.append(nn.BatchNorm2d(cout))
        elif norm == "in":
            layers.append(nn.InstanceNorm2d(cout, affine=True))
        if act == "lrelu":
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        elif act == "tanh":
            layers.append(nn.Tanh())
        elif act == "sigmoid":
            layers.append(nn.Sigmoid())
        super().__init__(*layers)


class GlobalFeatureNetwork(nn.Module):
    """VGG-16-Gray, fully convolutional: the last conv of each block has stride 2 and an
    extra stride-2 ``pool5`` conv replaces the 5th max-pool. 512x8x8 at 256 input."""

    # (name, in, out, stride) at width 1; conv1_1 has no norm (input layer).
    LAYERS = [
        ("conv1_1", None, 64, 1), ("conv1_2", 64, 64, 2),
        ("conv2_1", 64, 128, 1), ("conv2_2", 128, 128, 2),
        ("conv3_1", 128, 256, 1), ("conv3_2", 256, 256, 1), ("conv3_3", 256, 256, 2),
        ("conv4_1", 256, 512, 1), ("conv4_2", 512, 512, 1), ("conv4_3", 512, 512, 2),
        ("conv5_1", 512, 512, 1), ("conv5_2", 512, 512, 1), ("conv5_3", 512, 512, 1),
        ("pool5", 512, 512, 2),
    ]

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        sn = cfg.g_spectral_norm
        for name, cin, cout, s in self.LAYERS:
            cin_ = cfg.in_channels if cin is None else cfg.ch(cin)
            norm = "none" if cin is None else "bn"
            self.add_module(name, ConvBlock(cin_, cfg.ch(cout), 3, s, norm=norm, sn=sn))
        self.out_channels = cfg.ch(512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.children():
            x = m(x)
        return x


class SaliencyBranch(nn.Module):
    """Predicts the saliency map from decoder levels up5 (/8), up6 (/4) and up7 (/2)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        lat, sn = cfg.ch(cfg.latent_channels), cfg.g_spectral_norm
        self.conv11 = ConvBlock(cfg.ch(512), lat, sn=sn, upsample=True)
        self.conv12 = ConvBlock(lat, lat, sn=sn, upsample=True)
        self.conv2 = ConvBlock(cfg.ch(256), lat, sn=sn, upsample=True)
        self.conv3 = ConvBlock(cfg.ch(128), lat, sn=sn)
        self.conv4 = ConvBlock(3 * lat, lat, sn=sn, upsample=True)
        self.final = ConvBlock(lat, 1, norm="none", act="sigmoid", sn=sn)

    def forward(self, u5: torch.Tensor, u6: torch.Tensor, u7: torch.Tensor) -> torch.Tensor:
        a = self.conv12(self.conv11(u5))
        x = torch.cat([a, self.conv2(u6), self.conv3(u7)], 1)
        return self.final(self.conv4(x))


class Generator(nn.Module):
    """SCGAN generator. ``forward(gray)`` returns ``(rgb, saliency)``; saliency is None
    when the branch is disabled (the "w/o attention" ablation)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, sn = cfg.ch, cfg.g_spectral_norm
        self.gfn = GlobalFeatureNetwork(cfg) if (cfg.use_gfn and cfg.gfn_net == "vgg16-gray") else None
        # The ImageNet prior: the encoder's skips and/or the global features (one network for both).
        self.prior = EfficientNetLite(cfg.prior) if cfg.prior else None
        prior_gfn = cfg.prior_gfn
        self.gfn_proj = ConvBlock(HEAD_CHANNELS, c(512), 1, 1, sn=sn) if prior_gfn else None
        gfn_ch = (self.gfn.out_channels if self.gfn is not None else 0) + (c(512) if prior_gfn else 0)
        self.down1 = ConvBlock(cfg.in_channels, c(64), 7, 1, norm="none", sn=sn)
        if cfg.encoder == "scgan":
            self.down2 = ConvBlock(c(64), c(128), 3, 2, sn=sn)
            self.down3 = ConvBlock(c(128), c(256), 3, 2, sn=sn)
            self.down4 = ConvBlock(c(256), c(512), 3, 2, sn=sn)
            self.down5 = ConvBlock(c(512), c(512), 3, 2, sn=sn)
            self.down6 = ConvBlock(c(512), c(512), 3, 2, sn=sn)
            skips = (c(64), c(128), c(256), c(512), c(512), c(512))
        else:
            skips = (c(64), *feature_channels(cfg.encoder))
        self.down7 = ConvBlock(skips[5] + gfn_ch, c(512), 3, 2, sn=sn)
        self.down8 = ConvBlock(c(512), c(512), 3, 2, sn=sn)
        self.down9 = ConvBlock(c(512), c(512), 3, 2, norm="none", sn=sn)
        self.up1 = ConvBlock(c(512), c(512), sn=sn, upsample=True)
        self.up2 = ConvBlock(2 * c(512), c(512), sn=sn, upsample=True)
        self.up3 = ConvBlock(2 * c(512), c(512), sn=sn, upsample=True)
        self.up4 = ConvBlock(skips[5] + c(512), c(512), sn=sn, upsample=True)
        self.up5 = ConvBlock(skips[4] + c(512), c(512), sn=sn, upsample=True)
        self.up6 = ConvBlock(skips[3] + c(512), c(256), sn=sn, upsample=True)
        self.up7 = ConvBlock(skips[2] + c(256), c(128), sn=sn, upsample=True)
        self.up8 = ConvBlock(skips[1] + c(128), c(64), sn=sn, upsample=True)
        self.up9 = ConvBlock(skips[0] + c(64), cfg.out_channels, norm="none", act="tanh", sn=sn)
        self.saliency = SaliencyBranch(cfg) if cfg.use_saliency else None
        init_weights(self, skip=(self.gfn, self.prior))

    def train(self, mode: bool = True) -> "Generator":
        super().train(mode)
        if self.prior is not None:
            # Fine-tuning keeps the prior's ImageNet BatchNorm statistics: batches of 4 crops
            # would replace them with noise.
            for m in self.prior.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The six skips (/1 ... /32) and the bottleneck input (skip /32 + global features)."""
        d1 = self.down1(x)
        head = None
        if self.cfg.encoder == "scgan":
            skips = [d1]
            for down in (self.down2, self.down3, self.down4, self.down5, self.down6):
                skips.append(down(skips[-1]))
            if self.gfn_proj is not None:
                head = self.prior.features(x, head=True)[1]
        else:
            feats, head = self.prior.features(x, head=self.gfn_proj is not None)
            skips = [d1, *feats]
        extra = [self.gfn(x)] if self.gfn is not None else []
        if head is not None:
            extra.append(self.gfn_proj(head))
        # Global features join the middle of the U-Net; the skip path keeps plain d6.
        mid = torch.cat([skips[5], *extra], 1) if extra else skips[5]
        return skips, mid

    def forward(self, x: torch.Tensor, with_saliency: bool = True,
                with_u6: bool = False) -> tuple[torch.Tensor, ...]:
        """``(rgb, saliency)``, plus the 1/4-resolution decoder level ``u6`` when asked (the
        training-only colour-classification head reads it)."""
        (d1, d2, d3, d4, d5, d6), mid = self.encode(x)
        d7 = self.down7(mid)
        d8 = self.down8(d7)
        d9 = self.down9(d8)
        u1 = self.up1(d9)
        u2 = self.up2(torch.cat([d8, u1], 1))
        u3 = self.up3(torch.cat([d7, u2], 1))
        u4 = self.up4(torch.cat([d6, u3], 1))
        u5 = self.up5(torch.cat([d5, u4], 1))
        u6 = self.up6(torch.cat([d4, u5], 1))
        u7 = self.up7(torch.cat([d3, u6], 1))
        u8 = self.up8(torch.cat([d2, u7], 1))
        rgb = self.up9(torch.cat([d1, u8], 1))
        sal = self.saliency(u5, u6, u7) if (with_saliency and self.saliency is not None) else None
        return (rgb, sal, u6) if with_u6 else (rgb, sal)


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN critic on ``cat(gray, image)``; 30x30 raw scores at 256 input.

    The paper uses two of these: D_c on the colour image and D_A on the attention-weighted
    image ``rgb * saliency``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = lambda n: max(4, int(round(n * cfg.d_channels / 64)))  # noqa: E731
        sn, norm = cfg.d_spectral_norm, cfg.d_norm
        self.block1 = ConvBlock(cfg.in_channels + cfg.out_channels, c(64), 7, 1, norm="none", sn=sn)
        self.block2 = ConvBlock(c(64), c(128), 3, 2, norm=norm, sn=sn)
        self.block3 = ConvBlock(c(128), c(256), 3, 2, norm=norm, sn=sn)
        self.block4 = ConvBlock(c(256), c(512), 3, 2, norm=norm, sn=sn)
        self.final1 = ConvBlock(c(512), c(512), 4, 1, pad=1, norm=norm, sn=sn)
        self.final2 = ConvBlock(c(512), 1, 4, 1, pad=1, norm="none", act="none", sn=sn)
        init_weights(self)

    def forward(self, gray: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        x = torch.cat([gray, img], 1)
        for m in self.children():
            x = m(x)
        return x


def init_weights(module: nn.Module, skip: tuple[nn.Module | None, ...] = ()) -> None:
    """Paper §IV-A: N(0, 0.02) for conv weights, except the global feature networks
    (pretrained, or PyTorch's default when trained from scratch); BN weight N(1, 0.02)."""
    skipped = {id(m) for s in skip if s is not None for m in s.modules()}
    for m in module.modules():
        if id(m) in skipped:
            continue
        if isinstance(m, nn.Conv2d):
            w = m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight") else m.weight
            nn.init.normal_(w, 0.0, 0.02)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (spectral-norm u/v are buffers and not counted)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def build_generator(cfg: ModelConfig, seed: int | None = None) -> Generator:
    if seed is not None:
        torch.manual_seed(seed)
    return Generator(cfg.validate())


def fold_for_inference(model: nn.Module) -> nn.Module:
    """Remove spectral-norm parametrizations (baking W/sigma into the weight) and fuse each
    eval-mode BatchNorm into the preceding conv. The result computes the same function in
    eval mode with fewer ops; it is what the exporters and the torch backend run."""
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    for blk in model.modules():
        if isinstance(blk, nn.Sequential):
            mods = list(blk)
            for i in range(len(mods) - 1):
                if isinstance(mods[i], nn.Conv2d) and isinstance(mods[i + 1], nn.BatchNorm2d):
                    blk[i] = fuse_conv_bn_eval(mods[i], mods[i + 1])
                    blk[i + 1] = nn.Identity()
    return model


def gflops_per_frame(model: nn.Module, size: int = 256, in_channels: int = 1, with_saliency: bool = True) -> float:
    """Multiply-adds x 2 of the conv layers for one ``size`` x ``size`` frame. Colorizing
    does not need the saliency branch (``with_saliency=False``); training always runs it."""
    macs = 0

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        macs += out.numel() * k

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = torch.zeros(1, in_channels, size, size)
            model(x, with_saliency=with_saliency) if isinstance(model, Generator) else model(x)
    finally:
        for h in hs:
            h.remove()
        model.train(was_training)
    return 2 * macs / 1e9


class InferenceGenerator(nn.Module):
    """What gets exported and served: gray [-1,1] -> rgb [-1,1] (+ saliency [0,1])."""

    def __init__(self, gen: Generator, with_saliency: bool = False) -> None:
        super().__init__()
        self.gen = gen
        self.with_saliency = with_saliency and gen.saliency is not None

    def forward(self, gray: torch.Tensor):  # type: ignore[override]
        rgb, sal = self.gen(gray, with_saliency=self.with_saliency)
        return (rgb, sal) if self.with_saliency else rgb
