"""Package a trained generator as the default model shipped in ``scgan_rt/weights/``.

    python train/recipes/package_default.py RUN_DIR [--stage 2]

Reads RUN_DIR/stage{1,2}/generator.safetensors, the run summaries and the validation
evaluations written by default-model.sh, and stores the chosen generator in FP16 with its
full provenance (recipe, data, split, stages, metrics) in the file's metadata.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from scgan_rt.weights import DEFAULT_WEIGHTS, load_generator, save_weights


def _load(p: Path) -> dict:
    return json.loads(p.read_text()) if p.is_file() else {}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--stage", default="2", choices=("1", "2"))
    ap.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    a = ap.parse_args()
    gen, w = load_generator(a.run / f"stage{a.stage}" / "generator.safetensors")
    tc = json.loads(w.metadata.get("provenance", "{}")).get("train_config", {})
    if a.stage == "1":
        recipe = "stage 1 L1+attention"
    else:
        gan = "LSGAN" if tc.get("gan_mode") == "lsgan" else "WGAN-GP"
        extras = [x for x, on in (("random horizontal flips", tc.get("hflip")),
                                  (f"EMA {tc.get('ema_decay')} of the generator", tc.get("ema_decay"))) if on]
        recipe = f"stage 1 L1+attention, stage 2 {gan} with D_c and D_A" + (f", {', '.join(extras)}" if extras else "")
    stages = {s: _load(a.run / f"stage{s}.json") for s in ("1", "2")}
    evals = {s: _load(a.run / f"eval_stage{s}.json") for s in ("1", "2")}
    ev = evals[a.stage]
    val = sorted(p.name for p in (a.run / "data" / "val").iterdir())
    n_train = len(list((a.run / "data" / "train").iterdir()))
    m, b = ev.get("model", {}), ev.get("grayscale_baseline", {})
    prov = {
        "summary": (f"scgan-lite trained on {n_train} photos; val PSNR {m.get('psnr', float('nan')):.2f} dB "
                    f"(gray {b.get('psnr', float('nan')):.2f}), SSIM {m.get('ssim', float('nan')):.4f} "
                    f"(gray {b.get('ssim', float('nan')):.4f}), CCI {m.get('cci_mean', float('nan')):.1f}"),
        "recipe": f"train/recipes/default-model.sh ({recipe})",
        "training_data": {"source": "shared data set photos/train_512 (gcompris-qt-data, opencv-doc, hugin-data, "
                                    "scikit-image, libjxl-testdata; licenses in its MANIFEST.md)",
                          "photos": n_train},
        "validation": {"photos": len(val), "split_file": "train/recipes/default_val_split.txt",
                       "metrics": {f"stage{s}": evals[s] for s in evals if evals[s]}},
        "stages": {f"stage{s}": {k: stages[s].get(k) for k in ("steps", "epochs_done", "stopped", "wallclock_s",
                                                            "images_per_s", "final_losses")} for s in stages},
        "shipped_stage": a.stage,
        "ablations": ["no perceptual loss (no ImageNet VGG-16 offline)", "no GFN pretraining (no ImageNet)"],
        "seed": 0,
        "compute": f"{platform.machine()} CPU, {os.cpu_count()} cores, Python {platform.python_version()}, no GPU",
        "storage": "fp16 (upcast to fp32 on load)",
    }
    save_weights(a.out, gen, provenance=prov, fp16=True)
    print(f"wrote {a.out} ({a.out.stat().st_size / 1e6:.1f} MB): {prov['summary']}")


if __name__ == "__main__":
    main()
