"""Training throughput (images/s) of stage 1 and stage 2 at 256x256 for a preset.

    python scripts/train_throughput.py --preset scgan-lite --batch 4 --steps 3 [--device cpu] [--amp]

Random tensors stand in for data (the loader runs in worker processes and is not the
bottleneck); stage 2 includes both critics with gradient penalty and the VGG-16
perceptual loss (randomly initialised VGG: same cost as ImageNet weights).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from scgan_rt.config import TrainConfig, preset
from scgan_rt.train.distributed import DistInfo
from scgan_rt.train.stages import ColorizationStage


def measure(preset_name: str, stage: str, batch: int, steps: int, device: str, vgg: str, amp: bool = False) -> float:
    tcfg = TrainConfig(stage=stage, batch_size=batch, use_perceptual=stage == "2", amp=amp)
    st = ColorizationStage(tcfg, preset(preset_name), torch.device(device), DistInfo(),
                           perceptual_weights=vgg if stage == "2" else None)
    g = torch.Generator().manual_seed(0)
    b = {"gray": torch.rand(batch, 1, 256, 256, generator=g) * 2 - 1,
         "rgb": torch.rand(batch, 3, 256, 256, generator=g) * 2 - 1,
         "sal": torch.rand(batch, 1, 256, 256, generator=g)}
    st.step(b)  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        st.step(b)
    return batch * steps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="scgan-lite")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    a = ap.parse_args()
    import torchvision

    with tempfile.TemporaryDirectory() as td:
        vgg = str(Path(td) / "vgg16.pth")
        torch.save(torchvision.models.vgg16(weights=None).state_dict(), vgg)
        res = {f"stage{s}_images_per_s": round(measure(a.preset, s, a.batch, a.steps, a.device, vgg, a.amp), 3)
               for s in ("1", "2")}
    print(json.dumps({"preset": a.preset, "batch": a.batch, "device": a.device, "amp": a.amp, **res}))


if __name__ == "__main__":
    main()
