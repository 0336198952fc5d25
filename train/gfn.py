"""Global feature network pretraining (``--stage gfn``) and loading it into a generator.

The paper pretrains VGG-16-Gray as an ImageNet classifier on gray images. Here it is a
classifier over a class-per-folder tree: the generator's own ``GlobalFeatureNetwork``
plus a small head (global average pool + linear), so its weights load into
``Generator.gfn`` by name with nothing to rename. Optimiser: SGD with momentum and
weight decay, as in the authors' pre-train code.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from scgan_rt.atomic import atomic_path
from scgan_rt.config import ModelConfig, TrainConfig
from scgan_rt.errors import InputError, ModelError, UsageError
from scgan_rt.weights import read_state_dict
from scgan_rt.model import GlobalFeatureNetwork, Generator

from .distributed import DistInfo, average_gradients
from .stages import Stage

GFN_FORMAT = "scgan-rt-gfn"


class GfnClassifier(nn.Module):
    def __init__(self, mcfg: ModelConfig, num_classes: int) -> None:
        super().__init__()
        self.gfn = GlobalFeatureNetwork(mcfg)
        self.head = nn.Linear(self.gfn.out_channels, num_classes)

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        return self.head(F.adaptive_avg_pool2d(self.gfn(gray), 1).flatten(1))


def class_labels(files: list[Path]) -> tuple[list[str], list[int]]:
    """Class = first folder of each relative path."""
    if any(len(f.parts) < 2 for f in files):
        raise InputError("--stage gfn needs a class-per-folder tree (DATA/<class>/<image>); found images at the top level")
    classes = sorted({f.parts[0] for f in files})
    if len(classes) < 2:
        raise InputError(f"--stage gfn needs at least 2 class folders, found {len(classes)}")
    index = {c: i for i, c in enumerate(classes)}
    return classes, [index[f.parts[0]] for f in files]


class GfnStage(Stage):
    def __init__(self, tcfg: TrainConfig, mcfg: ModelConfig, device: torch.device, dist: DistInfo,
                 classes: list[str], labels: list[int]) -> None:
        super().__init__(tcfg, device, dist)
        self.classes = classes
        self.labels = torch.tensor(labels)
        self.net = GfnClassifier(mcfg, len(classes)).to(device)
        self.modules = {"classifier": self.net}
        self.optimizers = {"g": torch.optim.SGD(self.net.parameters(), lr=tcfg.gfn_lr, momentum=tcfg.gfn_momentum,
                                                weight_decay=tcfg.gfn_weight_decay)}
        self.schedulers = {"g": torch.optim.lr_scheduler.StepLR(self.optimizers["g"], 30, 0.1)}

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        gray = batch["gray"].to(self.device, non_blocking=True)
        y = self.labels[batch["index"]].to(self.device)
        with self.autocast:
            logits = self.net(gray)
        loss = F.cross_entropy(logits.float(), y)
        self.optimizers["g"].zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(self.optimizers["g"], self.dist)
        self.optimizers["g"].step()
        return {"loss_ce": loss.item(), "accuracy": (logits.argmax(1) == y).float().mean().item()}


def save_gfn(path: Path, net: GfnClassifier, mcfg: ModelConfig, classes: list[str], provenance: dict) -> None:
    from safetensors.torch import save_file

    sd = {k: v.detach().cpu().contiguous() for k, v in net.gfn.state_dict().items()}
    meta = {"format": GFN_FORMAT, "config": mcfg.to_json(), "classes": json.dumps(classes),
            "provenance": json.dumps(provenance, sort_keys=True, default=str)}
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata=meta)


def load_gfn_weights(gen: Generator, path: str | Path, console: Console | None = None) -> dict[str, int]:
    """Load GFN weights into ``gen.gfn`` by parameter name and report what matched.
    Accepts our ``gfn.safetensors`` (bare keys) or any state dict whose keys carry a
    ``gfn.`` prefix (e.g. a generator). Shape mismatches and zero matches are errors."""
    if gen.gfn is None:
        raise UsageError("--gfn-weights given but the model has no GFN (--no-gfn)")
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--gfn-weights not found: {p}")
    sd = read_state_dict(p, "GFN weights")
    sd = {k.split("gfn.", 1)[1] if k.startswith(("gfn.", "generator.gfn.")) else k: v for k, v in sd.items()}
    own = gen.gfn.state_dict()
    matched = {k: v for k, v in sd.items() if k in own}
    wrong = [k for k, v in matched.items() if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        raise ModelError(f"{p.name}: {len(wrong)} GFN tensors have the wrong shape (e.g. {wrong[0]}: "
                         f"{tuple(sd[wrong[0]].shape)} vs {tuple(own[wrong[0]].shape)}); was it trained with another width?")
    if not matched:
        raise ModelError(f"{p.name}: no tensor names match the generator's GFN (keys like {next(iter(own))})")
    gen.gfn.load_state_dict(matched, strict=False)
    report = {"matched": len(matched), "missing": len(own) - len(matched), "unused": len(sd) - len(matched)}
    if console is not None:
        missing = [k for k in own if k not in matched][:3]
        console.print(f"GFN weights {p.name}: {report['matched']}/{len(own)} tensors loaded, "
                      f"{report['missing']} missing{' (e.g. ' + ', '.join(missing) + ')' if missing else ''}, "
                      f"{report['unused']} unused")
    return report
