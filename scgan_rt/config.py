"""Model and training configuration.

``ModelConfig`` fully describes the architecture and is stored (as JSON) inside every
weights file, ONNX file and engine header, so an artifact always describes itself
(the nanoGPT habit). ``TrainConfig`` holds the paper's training recipe. The inference
settings (``settings.InferConfig``) sit above the backends, whose names they check.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from .errors import ModelError, UsageError


# The U-Net halves the frame 8 times, so frame and crop sizes are multiples of 2**8.
SIZE_MULTIPLE = 256


def check_size(size: int, flag: str = "--size") -> int:
    if size < SIZE_MULTIPLE or size % SIZE_MULTIPLE:
        raise UsageError(f"{flag} must be a multiple of {SIZE_MULTIPLE} (the U-Net has 8 stride-2 stages), "
                         f"got {size}")
    return int(size)


PRIOR = "efficientnet-lite0"
PRIORS = (PRIOR, "efficientnet-lite1", "efficientnet-lite2")  # ImageNet EfficientNet-Lite variants
GFN_NETS = ("vgg16-gray", *PRIORS)
ENCODERS = ("scgan", *PRIORS)
PERCEPTUAL_NETS = ("auto", "vgg16", PRIOR)


@dataclass(frozen=True)
class ModelConfig:
    preset: str = "scgan"
    # Channel multiplier applied to every layer; 1.0 is the paper's network.
    width: float = 1.0
    in_channels: int = 1  # gray (or N-channel multispectral, paper §F)
    out_channels: int = 3  # RGB through tanh, as in the paper
    start_channels: int = 64
    latent_channels: int = 128  # saliency branch width
    # Global feature network. Off = the paper's "w/o GFN" ablation.
    use_gfn: bool = True
    # Which network: the paper's VGG-16-Gray (trained from scratch here) or the ImageNet-
    # pretrained EfficientNet-Lite0 (scgan_rt/backbone.py), whose 1280-channel head joins
    # the 8x8 bottleneck (at 256 input) where the paper's GFN does.
    gfn_net: str = "vgg16-gray"
    # The U-Net's encoder: the paper's stride-2 convs, or the pretrained EfficientNet-Lite0
    # whose /2 ... /32 features become the skips (a DeOldify/DDColor-style pretrained-encoder
    # U-Net). With both set to the prior, one network serves both (see docs/decisions.md).
    encoder: str = "scgan"
    # Saliency branch. Off = the paper's "w/o attention" ablation.
    use_saliency: bool = True
    # The paper puts spectral norm on the discriminators only; the authors' code also
    # wraps every generator conv. Kept as an option (off) - see docs/decisions.md.
    g_spectral_norm: bool = False
    d_channels: int = 64
    # Paper §IV-A: BN + LeakyReLU on every layer but input/output, discriminators included.
    d_norm: str = "bn"
    d_spectral_norm: bool = True

    def ch(self, c: int) -> int:
        """Channels of a layer that has ``c`` channels in the width-1 network."""
        return max(4, int(round(c * self.width)))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ModelError(f"unknown model config keys {unknown} (weights from a newer scgan-rt?)")
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> "ModelConfig":
        try:
            d = json.loads(s)
        except json.JSONDecodeError as e:
            raise ModelError(f"model config is not valid JSON: {e}") from None
        return cls.from_dict(d)

    def validate(self) -> "ModelConfig":
        if not (0 < self.width <= 4):
            raise UsageError(f"width must be in (0, 4], got {self.width}")
        if self.d_norm not in ("bn", "in", "none"):
            raise UsageError(f"d_norm must be bn|in|none, got {self.d_norm!r}")
        if self.gfn_net not in GFN_NETS:
            raise UsageError(f"gfn_net must be one of {', '.join(GFN_NETS)}, got {self.gfn_net!r}")
        if self.encoder not in ENCODERS:
            raise UsageError(f"encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")
        if self.uses_prior and self.in_channels != 1:
            raise UsageError(f"the pretrained {self.prior} takes gray input (in_channels 1), got {self.in_channels}")
        if self.encoder in PRIORS and self.prior_gfn and self.gfn_net != self.encoder:
            raise UsageError(f"one prior serves both the encoder and the global features: got encoder "
                             f"{self.encoder} and gfn_net {self.gfn_net}")
        return self

    @property
    def prior_gfn(self) -> bool:
        """Whether the global features come from the ImageNet prior's head."""
        return self.use_gfn and self.gfn_net in PRIORS

    @property
    def prior(self) -> str | None:
        """The ImageNet-pretrained EfficientNet-Lite variant the generator holds, if any."""
        return self.encoder if self.encoder in PRIORS else (self.gfn_net if self.prior_gfn else None)

    @property
    def uses_prior(self) -> bool:
        return self.prior is not None


PRESETS: dict[str, ModelConfig] = {
    "scgan": ModelConfig(preset="scgan", width=1.0),
    # Same topology at a quarter of the channels: 3.7 M generator parameters, for CPUs/edge.
    "scgan-lite": ModelConfig(preset="scgan-lite", width=0.25, d_channels=32),
    # scgan-lite's decoder on the ImageNet-pretrained EfficientNet-Lite0 (encoder and global
    # features; docs/decisions.md has the measurements behind the choice).
    "scgan-prior": ModelConfig(preset="scgan-prior", width=0.25, d_channels=32, encoder=PRIOR, gfn_net=PRIOR),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides).validate()


@dataclass(frozen=True)
class TrainConfig:
    """The paper's recipe (§IV-A); defaults are the paper's values."""

    stage: str = "1"  # "1" (L1 + attention), "2" (WGAN-GP), "gfn" (classifier pretraining)
    epochs: int = 10
    batch_size: int = 8
    crop: int = 256
    lr_g: float = 2e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    lr_halve_every: int = 10  # epochs; stage 2 halves G and D lr every 10 epochs
    lambda_l1: float = 1.0
    lambda_attn: float = 0.5
    lambda_gan: float = 0.05
    lambda_perceptual: float = 5.0
    lambda_gp: float = 10.0
    input_noise_std: float = 0.005  # paper §IV-A; absent from the authors' code
    gan_mode: str = "wgangp"  # or "lsgan" (Table II ablation)
    # Critic normalisation override ("" keeps the model config's; paper: "bn"). The
    # critics are built fresh in stage 2, so this can differ from stage 1's config.
    d_norm: str = ""
    pixel_loss: str = "l1"  # or "l2" (Table II ablation)
    use_perceptual: bool = True
    min_colorfulness: float = 10.0  # photos below this are treated as gray and skipped
    seed: int = 0
    lr_g_stage2: float = 1e-4  # paper: G and D both start at 1e-4 in stage 2
    use_gan: bool = True  # False = Table II "w/o GAN" (stage 2 without discriminators)
    use_attention: bool = True  # False = Table II "w/o attention" (no L_A, no D_A, no saliency branch)
    n_critic: int = 1  # the authors' code: one D step per G step
    hflip: bool = False  # random horizontal flips (not in the paper; doubles a small data set)
    load_size: int = 0  # >0: resize short side to this before cropping (0 = paper: only upscale if < crop)
    # >0: multi-scale crops - each sample's short side is drawn uniformly from [load_size,
    # load_size_max], so a small photo set yields crops at many scales (not in the paper).
    load_size_max: int = 0
    max_steps: int = 0  # 0 = no limit; stops cleanly after this many optimiser steps in total
    max_minutes: float = 0.0  # 0 = no limit; stops cleanly (checkpoint + export) at this wall-clock budget
    workers: int = 2  # DataLoader worker processes (decode happens there, never in the main process)
    amp: bool = False  # bf16 autocast on CUDA only
    log_every: int = 10  # TensorBoard scalars every N steps
    sample_every: int = 200  # TensorBoard image grids every N steps
    ema_decay: float = 0.0  # >0: also keep an EMA of the generator's weights and export that (train/ema.py)
    # The pretrained prior (ModelConfig.encoder / gfn_net = efficientnet-lite0): frozen for
    # the first N steps, then fine-tuned at this fraction of the generator's learning rate.
    prior_freeze_steps: int = 0
    prior_lr_scale: float = 0.1
    # Perceptual features: torchvision's VGG-16 (the paper; needs its file) or the frozen
    # ImageNet EfficientNet-Lite0 from the [train] extra; "auto": VGG-16 when its file is
    # given or cached, else EfficientNet-Lite0. The paper uses it in stage 2 only;
    # perceptual_stage1 adds it to stage 1 too.
    perceptual_net: str = "auto"
    perceptual_stage1: bool = False
    # Against L1's desaturation (both off in the paper's recipe):
    # classification over quantised Lab ab bins with class rebalancing (Zhang et al. 2016),
    # an auxiliary head on the 1/4-resolution decoder level ...
    lambda_ab_class: float = 0.0
    # ... and a bounded colourfulness term |CF(pred) - CF(truth)| (Hasler & Suesstrunk 2003).
    lambda_colorfulness: float = 0.0
    # Mean CIEDE2000 between the prediction with the photo's luma put back (what colorize
    # ships) and the photo: a perceptual colour difference instead of L1's per-channel one.
    lambda_ciede: float = 0.0
    # Every loss sees the prediction with the photo's own luma put back (what inference
    # ships: only the predicted chroma is kept), so no gradient is spent on the luma the
    # merge discards. Off in the paper's recipe (L1 on the raw RGB output).
    merge_luma: bool = False
    gfn_lr: float = 0.01  # GFN classifier pretraining: SGD as in the authors' pre-train code
    gfn_momentum: float = 0.9
    gfn_weight_decay: float = 5e-4

    @staticmethod
    def epochs_for(stage: str) -> int:
        """The paper's epochs per stage: 10 for stage 1 (and GFN pretraining), 30 for stage 2."""
        return 30 if stage == "2" else TrainConfig.epochs

    def validate(self) -> "TrainConfig":
        if self.stage not in ("1", "2", "gfn"):
            raise UsageError(f"--stage must be 1, 2 or gfn, got {self.stage!r}")
        check_size(self.crop, "--crop")
        if self.batch_size < 1 or self.epochs < 1:
            raise UsageError("--batch-size and --epochs must be >= 1")
        if self.gan_mode not in ("wgangp", "lsgan"):
            raise UsageError(f"--gan-mode must be wgangp or lsgan, got {self.gan_mode!r}")
        if self.pixel_loss not in ("l1", "l2"):
            raise UsageError(f"--pixel-loss must be l1 or l2, got {self.pixel_loss!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UsageError(f"--ema must be in [0, 1), got {self.ema_decay}")
        if self.perceptual_net not in PERCEPTUAL_NETS:
            raise UsageError(f"--perceptual-net must be one of {', '.join(PERCEPTUAL_NETS)}, got {self.perceptual_net!r}")
        if min(self.lambda_ab_class, self.lambda_colorfulness, self.lambda_ciede, self.prior_freeze_steps) < 0:
            raise UsageError("--ab-class, --colorfulness, --ciede and --prior-freeze-steps must be >= 0")
        if not 0 <= self.prior_lr_scale <= 1:
            raise UsageError(f"--prior-lr-scale must be in [0, 1], got {self.prior_lr_scale}")
        if self.load_size and self.load_size < self.crop:
            raise UsageError(f"--load-size ({self.load_size}) must be >= --crop ({self.crop})")
        if self.load_size_max and not self.load_size:
            raise UsageError("--load-size-max needs --load-size (the smallest short side)")
        if self.load_size_max and self.load_size_max < self.load_size:
            raise UsageError(f"--load-size-max ({self.load_size_max}) must be >= --load-size ({self.load_size})")
        return self
