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

from scgan_rt.settings import InferConfig
from scgan_rt.weights import DEFAULT_WEIGHTS, load_generator, read_weights, save_weights


def _load(p: Path) -> dict:
    return json.loads(p.read_text()) if p.is_file() else {}


def _train_config(w) -> dict:
    return json.loads(w.metadata.get("provenance", "{}")).get("train_config", {})


def _terms(tc: dict) -> str:
    """The optional loss terms and training options of one stage's train config."""
    extras = [x for x, on in ((f"colourfulness x{tc.get('lambda_colorfulness')}", tc.get("lambda_colorfulness")),
                              (f"ab-class x{tc.get('lambda_ab_class')}", tc.get("lambda_ab_class")),
                              (f"CIEDE2000 x{tc.get('lambda_ciede')}", tc.get("lambda_ciede")),
                              (f"EMA {tc.get('ema_decay')}", tc.get("ema_decay")),
                              (f"{tc.get('max_steps')} steps", tc.get("max_steps"))) if on]
    return f" ({', '.join(extras)})" if extras else ""


def _recipe(stage_tcs: dict[str, dict], stage: str) -> str:
    tc1, tc2 = stage_tcs.get("1", {}), stage_tcs.get("2", {})
    text = f"stage 1 L1+attention{_terms(tc1)}"
    if stage == "2":
        gan = "LSGAN" if tc2.get("gan_mode") == "lsgan" else "WGAN-GP"
        perc = f", {tc2.get('perceptual_net')} perceptual x{tc2.get('lambda_perceptual')}" if tc2.get("use_perceptual") else ""
        text += f", stage 2 {gan} with D_c and D_A{perc}{_terms(tc2)}"
    return text + ("; random horizontal flips" if (tc2 or tc1).get("hflip") else "")


def _departures(cfg, tc: dict) -> list[str]:
    """Where the shipped model departs from the paper's recipe."""
    out = []
    if cfg.encoder != "scgan" or (cfg.use_gfn and cfg.gfn_net != "vgg16-gray"):
        out.append("ImageNet EfficientNet-Lite0 as the U-Net encoder and global features instead of VGG-16-Gray "
                   "(no VGG-16 weights offline; docs/decisions.md)")
    elif not tc.get("gfn_weights"):
        out.append("no GFN pretraining (no ImageNet)")
    if tc.get("perceptual_net") == "efficientnet-lite0":
        out.append("perceptual loss on EfficientNet-Lite0 features instead of VGG-16 relu3_3")
    elif not tc.get("use_perceptual", True):
        out.append("no perceptual loss")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--stage", default="2", choices=("1", "2"))
    ap.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    a = ap.parse_args()
    gen, w = load_generator(a.run / f"stage{a.stage}" / "generator.safetensors")
    tc = _train_config(w)
    stage_tcs = {a.stage: tc}
    if a.stage == "2":  # stage 1's own terms (its colourfulness weight and length differ)
        stage_tcs["1"] = _train_config(read_weights(a.run / "stage1" / "generator.safetensors"))
    recipe = _recipe(stage_tcs, a.stage)
    stages = {s: _load(a.run / f"stage{s}.json") for s in ("1", "2")}
    evals = {s: _load(a.run / f"eval_stage{s}.json") for s in ("1", "2")}
    ev = evals[a.stage]
    val = sorted(p.name for p in (a.run / "data" / "val").iterdir())
    n_train = len(list((a.run / "data" / "train").iterdir()))
    m, b = ev.get("model", {}), ev.get("grayscale_baseline", {})
    prov = {
        "summary": (f"{gen.cfg.preset} trained on {n_train} photos; val PSNR {m.get('psnr', float('nan')):.2f} dB "
                    f"(gray {b.get('psnr', float('nan')):.2f}), SSIM {m.get('ssim', float('nan')):.4f} "
                    f"(gray {b.get('ssim', float('nan')):.4f}), CCI {m.get('cci_mean', float('nan')):.1f}"),
        "recipe": f"train/recipes/default-model.sh ({recipe})",
        "training_data": {"source": "shared data set photos/train_512 (gcompris-qt-data, opencv-doc, scratch, "
                                    "kphotoalbum, enlightenment-data, lxqt-themes, hugin-data, scikit-image, "
                                    "libjxl-testdata; licenses in its MANIFEST.md)",
                          "photos": n_train},
        "validation": {"photos": len(val), "split_file": "train/recipes/default_val_split.txt",
                       "settings": f"scgan-rt evaluate defaults (--chroma-smoothing {InferConfig.chroma_smoothing:g})",
                       "metrics": {f"stage{s}": evals[s] for s in evals if evals[s]}},
        "stages": {f"stage{s}": {k: stages[s].get(k) for k in ("steps", "epochs_done", "stopped", "wallclock_s",
                                                            "images_per_s", "final_losses")} for s in stages},
        "shipped_stage": a.stage,
        "ablations": _departures(gen.cfg, tc),
        "seed": tc.get("seed"),
        "compute": f"{platform.machine()} CPU, {os.cpu_count()} cores ({os.environ.get('OMP_NUM_THREADS', 'all')} "
                   f"torch threads), Python {platform.python_version()}, no GPU",
        "storage": "fp16 (upcast to fp32 on load)",
    }
    save_weights(a.out, gen, provenance=prov, fp16=True)
    print(f"wrote {a.out} ({a.out.stat().st_size / 1e6:.1f} MB): {prov['summary']}")


if __name__ == "__main__":
    main()
