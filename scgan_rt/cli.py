"""The ``scgan-rt`` command: a thin Typer layer over the library.

Each command parses arguments, calls one library function and turns ``ScganError`` into
a one-line message and its exit code (see ``errors.EXIT_CODES``). No traceback is shown
for user errors; ``SCGAN_DEBUG=1`` shows it for everything.
"""
from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer
from rich.console import Console

from .errors import EXIT_INTERNAL, EXIT_INTERRUPTED, ScganError

app = typer.Typer(
    help="SCGAN colorization: photos, folders and films, from training to TensorRT.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
model_app = typer.Typer(help="Create and inspect generator weights.", no_args_is_help=True)
app.add_typer(model_app, name="model")

console = Console(stderr=True)
out = Console()
F = TypeVar("F", bound=Callable[..., Any])


def guarded(fn: F) -> F:
    """Map library errors to one stderr line + exit code; Ctrl-C to 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ScganError as e:
            if os.environ.get("SCGAN_DEBUG"):
                raise
            console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/yellow]")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as e:  # a bug: say so in one line, keep the traceback for --debug
            if os.environ.get("SCGAN_DEBUG"):
                raise
            console.print(f"[red]internal error:[/red] {type(e).__name__}: {e} (rerun with SCGAN_DEBUG=1 for a traceback)",
                          highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    out.print_json(json.dumps(obj, default=str))


# --- foundation commands (issue 2) ---


def _weights_or_default(model: Optional[Path]) -> Path:
    from .errors import ModelError
    from .weights import default_weights

    if model is not None:
        return model
    d = default_weights()
    if d is None:
        raise ModelError("no default model is bundled with this build; pass --model W.safetensors "
                         "(create one with `scgan-rt model init --preset scgan-lite -o W.safetensors`)")
    return d


@app.command("info")
@guarded
def info_cmd(json_out: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Versions, devices, which backends are usable and why not, and the default model."""
    import platform

    import torch

    from . import __version__
    from .backends import backend_report
    from .weights import default_weights, describe, read_weights

    versions: dict[str, Any] = {"scgan-rt": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for mod in ("torchvision", "onnx", "onnxruntime", "av", "tensorrt", "pycuda", "PIL", "numpy"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            versions[mod] = None
    devices = {"cpu_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
               "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
    dw = default_weights()
    default = describe(read_weights(dw)) if dw else None
    backends = [b.__dict__ for b in backend_report()]
    if json_out:
        print_json({"versions": versions, "devices": devices, "backends": backends, "default_model": default})
        return
    out.print(f"[bold]scgan-rt {__version__}[/bold]")
    out.print("versions: " + ", ".join(f"{k} {v or '-'}" for k, v in versions.items()), highlight=False)
    out.print(f"devices: cpu ({devices['cpu_threads']} threads)" + "".join(f", cuda: {g}" for g in devices["gpus"]))
    out.print("backends (auto order):")
    for b in backends:
        out.print(f"  {'[green]yes[/green]' if b['usable'] else '[red]no [/red]'} {b['name']}: {b['reason']}")
    if default:
        prov = default["provenance"]
        out.print(f"default model: {default['preset']} ({Path(default['path']).name}, sha256 {default['sha256'][:12]}) "
                  f"- {prov.get('summary', 'see `scgan-rt model info`')}", highlight=False)
    else:
        out.print("default model: none bundled (pass --model)")


@model_app.command("init")
@guarded
def model_init_cmd(
    preset_name: str = typer.Option("scgan-lite", "--preset", help="scgan (the paper) or scgan-lite (CPU/edge)."),
    output: Path = typer.Option(..., "-o", "--output", help="Weights file to write (.safetensors)."),
    seed: int = typer.Option(0, "--seed", help="Initialisation seed."),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Create randomly initialised generator weights (paper init: N(0, 0.02))."""
    from .config import preset
    from .errors import UsageError
    from .model import build_generator, count_parameters
    from .weights import save_weights

    if output.exists() and not overwrite:
        raise UsageError(f"{output} exists; use --overwrite")
    cfg = preset(preset_name)
    gen = build_generator(cfg, seed=seed)
    save_weights(output, gen, provenance={"kind": "random-init", "seed": seed,
                                          "summary": "randomly initialised, untrained"})
    out.print(f"wrote {output} ({cfg.preset}, {count_parameters(gen):,} parameters, seed {seed}, UNTRAINED)")


@model_app.command("info")
@guarded
def model_info_cmd(
    weights: Path = typer.Argument(..., help="Weights file."),
    size: int = typer.Option(256, "--size", help="Frame size for the GFLOPs figure."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Preset, parameter count, GFLOPs per frame and provenance of a weights file."""
    from .model import count_parameters, gflops_per_frame
    from .weights import describe, load_generator

    gen, w = load_generator(weights)
    d = describe(w)
    d["parameters"] = count_parameters(gen)
    d["gflops_per_frame"] = round(gflops_per_frame(gen, size, w.config.in_channels), 3)
    d["size"] = size
    if json_out:
        print_json(d)
        return
    out.print(f"[bold]{w.path.name}[/bold]  preset {d['preset']}  width {w.config.width}")
    out.print(f"parameters: {d['parameters']:,}   GFLOPs/frame @ {size}: {d['gflops_per_frame']}")
    out.print(f"sha256: {d['sha256']}   created: {d['created']}   scgan-rt {d['scgan_rt_version']}")
    out.print(f"provenance: {json.dumps(d['provenance'], sort_keys=True)}", highlight=False)


def _progress() -> Any:
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=True)


@app.command("colorize")
@guarded
def colorize_cmd(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders (recursive)."),
    output: Path = typer.Option(Path("colorized"), "-o", "--output", help="Output folder; the input tree is mirrored."),
    model: Optional[Path] = typer.Option(None, "--model", help="Weights (.safetensors); default: the bundled model."),
    backend: str = typer.Option("auto", "--backend", help="auto|torch|onnxruntime|tensorrt"),
    device: str = typer.Option("auto", "--device", help="auto|cpu|cuda"),
    batch_size: int = typer.Option(4, "--batch-size", min=1),
    size: int = typer.Option(256, "--size", help="Network input size (multiple of 256)."),
    save_saliency: bool = typer.Option(False, "--save-saliency", help="Also write NAME_saliency.png."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo outputs that already exist."),
    skip_color: bool = typer.Option(False, "--skip-color", help="Skip inputs that already have colour."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Colorize photos at their original resolution (luminance kept, chroma predicted)."""
    from .backends import open_backend, resolve_device
    from .config import InferConfig
    from .errors import EXIT_PARTIAL
    from .pipeline import Colorizer, colorize_files, plan_jobs, preflight_output_dir

    cfg = InferConfig(size=size, batch_size=batch_size, backend=backend, device=device, skip_color=skip_color,
                      save_saliency=save_saliency, overwrite=overwrite).validate()
    jobs = plan_jobs(inputs, output)
    preflight_output_dir(output)
    be = open_backend(cfg.backend, _weights_or_default(model), device=cfg.device, with_saliency=save_saliency)
    colorizer = Colorizer(be, size=cfg.size, device=resolve_device(cfg.device))
    with _progress() as prog:
        task = prog.add_task("colorizing", total=len(jobs), rate="")
        t0 = __import__("time").perf_counter()

        def on_progress(done: int, total: int) -> None:
            dt = __import__("time").perf_counter() - t0
            prog.update(task, completed=done, rate=f"{done / dt:.2f} img/s" if dt > 0 else "")

        rep = colorize_files(jobs, colorizer, batch_size=cfg.batch_size, overwrite=cfg.overwrite,
                             skip_color=cfg.skip_color, save_saliency=cfg.save_saliency,
                             max_pixels=cfg.max_pixels, on_progress=on_progress)
    if json_out:
        print_json(rep.as_dict())
    else:
        out.print(f"{len(rep.done)} colorized -> {output} ({rep.images_per_s:.2f} img/s, backend {rep.backend}); "
                  f"{len(rep.skipped_existing)} already done, {len(rep.skipped_color)} colour skipped, "
                  f"{len(rep.failed)} failed", highlight=False)
    for path, err in rep.failed:
        console.print(f"[red]failed:[/red] {err}", highlight=False, soft_wrap=True)
    if rep.failed:
        raise typer.Exit(EXIT_PARTIAL)


@app.command("evaluate")
@guarded
def evaluate_cmd(
    folder: Path = typer.Argument(..., help="Folder of colour photos (ground truth)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Weights; default: the bundled model."),
    size: int = typer.Option(256, "--size", help="Evaluation size (paper: 256)."),
    backend: str = typer.Option("auto", "--backend"),
    device: str = typer.Option("auto", "--device"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """PSNR, SSIM, CCI mean and CCI ratio of the model vs the grayscale baseline (paper Table I)."""
    import numpy as np

    from .backends import open_backend, resolve_device
    from .config import InferConfig
    from .errors import InputError
    from .images import LoadedImage
    from .metrics import evaluate
    from .pipeline import Colorizer

    cfg = InferConfig(size=size, backend=backend, device=device).validate()
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder}")
    be = open_backend(cfg.backend, _weights_or_default(model), device=cfg.device)
    colorizer = Colorizer(be, size=cfg.size, device=resolve_device(cfg.device))

    def run(gray: np.ndarray) -> np.ndarray:
        return colorizer.colorize([LoadedImage(folder, gray, None, 8, "L", "", False)])[0][0]

    with _progress() as prog:
        task = prog.add_task("evaluating", total=None, rate="")
        res = evaluate(folder, run, size=cfg.size, on_progress=lambda d, t: prog.update(task, completed=d, total=t))
    if json_out:
        print_json(res)
        return
    from rich.table import Table

    t = Table(title=f"{res['images']} photos at {size}x{size} (ground-truth CCI mean {res['ground_truth_cci_mean']})")
    for col in ("", "PSNR dB", "SSIM", "SSIM (dr=2, paper)", "CCI mean", "CCI in [16,20]"):
        t.add_column(col)
    for name, key in (("model", "model"), ("grayscale", "grayscale_baseline")):
        s = res[key]
        t.add_row(name, f"{s['psnr']:.3f}", f"{s['ssim']:.4f}", f"{s['ssim_dr2']:.4f}", f"{s['cci_mean']:.2f}",
                  f"{100 * s['cci_ratio']:.1f}%")
    out.print(t)

# --- train commands (issue 3) ---

# --- deployment commands (issue 4) ---


def main() -> None:
    app()


if __name__ == "__main__":
    main()
