"""Exponential moving average of the generator's weights (as timm's ``ModelEmaV2``).

GAN generators oscillate from step to step; the running average of their weights is
steadier than any single iterate (ProGAN, StyleGAN and BigGAN all ship the average). Off
by default: the paper trains and ships the raw generator."""
from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEma(nn.Module):
    """``module`` is the averaged copy; ``updates`` is checkpointed with it, so a resumed
    run continues the same average."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def train(self, mode: bool = True) -> "ModelEma":
        return self  # the average is never trained; BN statistics come from the live model

    @torch.no_grad()
    def reset(self, model: nn.Module) -> None:
        """Start the average again from ``model`` (after --init, or on enabling it at resume)."""
        self.module.load_state_dict(model.state_dict())
        self.updates.zero_()

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        n = int(self.updates)
        # Warm-up: the first updates follow the model closely instead of the stale start.
        d = min(self.decay, (1 + n) / (10 + n))
        for e, m in zip(self.module.state_dict().values(), model.state_dict().values()):
            if e.dtype.is_floating_point:
                e.lerp_(m.detach(), 1 - d)
            else:
                e.copy_(m)
