"""The ``scgan-rt`` command: a thin Typer layer over the library.

Each command parses arguments, calls one library function and turns ``ScganError`` into
a one-line message and its exit code (see ``errors.EXIT_CODES``). No traceback is shown
for user errors; ``SCGAN_DEBUG=1`` shows it for everything.
"""
from __future__ import annotations

import functools
import json
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape  # messages name files and extras such as scgan-rt[ray]: never markup

from .backends import names as backend_names
from .export.engine import DEFAULT_PROFILE, DEFAULT_WORKSPACE_GIB
from .export.quantize import CALIBRATION_COUNT
from .config import TrainConfig
from .errors import (EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED, ScganError, Terminated, raise_if_signalled,
                     resumable, signalled)
from .settings import BENCH_BATCH, BENCH_ITERS, BENCH_SECONDS, PROGRESS_SECONDS, InferConfig, parse_batch_size
from .version import __version__

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
I = InferConfig  # option defaults are the settings' own field defaults
T = TrainConfig
BACKEND_CHOICES = "|".join(backend_names())
DEVICE_CHOICES = "auto|cpu|cuda|cuda:N"
PRECISION_CHOICES = "auto|fp32|fp16|int8"
PRECISION_HELP = ("Network precision: auto (each backend's accurate choice, see `info`), fp32, fp16 (GPUs) or "
                  "int8 (a QDQ model calibrated on the bundled photos, cached; or pass an `export --int8` file).")
MODEL_HELP = "'default', a bundled model's name (scgan-lite-v1 ...), or a weights/ONNX/engine file."
SMOOTHING_HELP = ("Low-pass the predicted colour (Gaussian sigma in network pixels; 0: as predicted). "
                  "The luminance keeps all its detail.")


def _plain_type(param: Any, ctx: Any) -> Optional[str]:
    """Help shows a metavar, else click's type name (PATH, INTEGER); never Python annotations
    such as ``<list[Path]>``, and nothing for flags."""
    if param.metavar is not None:
        return param.metavar
    if getattr(param, "is_flag", False):
        return None
    inner = param.display_type(ctx).strip("<>")
    return inner[5:-1].upper() + "..." if inner.startswith("list[") else inner.upper()


def _argument_type(param: Any, ctx: Any) -> Optional[str]:
    """An argument's metavar already is its name: not twice (``INPUT INPUT``)."""
    return None if param.metavar is not None else _plain_type(param, ctx)


def _usage_name(param: Any) -> str:
    """``INPUT...`` and ``[NAME]`` in the usage line, as click writes them (not ``{INPUT}...``)."""
    name = param.display_name_raw if param.required else f"[{param.display_name_raw}]"
    return name + ("..." if param.nargs != 1 else "")


# Typer >= 0.20 renders annotations in the help's type column and braces required
# arguments in the usage line; there is no setting for either.
typer.core.TyperArgument.display_type_rich = _argument_type  # type: ignore[method-assign]
typer.core.TyperOption.display_type_rich = _plain_type  # type: ignore[method-assign]
typer.core.TyperArgument._usage_display_name = _usage_name  # type: ignore[attr-defined]


def _version(value: bool) -> None:
    if value:
        out.print(f"scgan-rt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """SCGAN colorization: photos, folders and films, from training to TensorRT."""


def guarded(fn: F) -> F:
    """Map library errors to one stderr line + exit code; Ctrl-C to 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _warning_line
                result = fn(*args, **kwargs)
            raise_if_signalled()  # an interrupt that native code swallowed still ends the run
            return result
        except KeyboardInterrupt as e:
            _stop(isinstance(e, Terminated))
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as e:
            if signalled() is not None:  # the error is the interrupt's doing (a broken import, a torn write)
                _stop(signalled() == signal.SIGTERM)
            if os.environ.get("SCGAN_DEBUG"):
                raise
            if isinstance(e, ScganError):
                console.print(f"[red]error:[/red] {escape(shown(str(e)))}", highlight=False, soft_wrap=True)
                raise typer.Exit(e.exit_code) from None
            # A bug: say so in one line, keep the traceback for SCGAN_DEBUG=1.
            console.print(f"[red]internal error:[/red] {type(e).__name__}: {escape(shown(str(e)))} (a bug: please "
                          f"report it with the output of the same command run with SCGAN_DEBUG=1)", highlight=False,
                          soft_wrap=True)
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper  # type: ignore[return-value]


# Control characters in file names (a newline, an escape) are shown escaped, never raw.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(32), 127)} | {9: "\\t", 10: "\\n", 13: "\\r"}


def shown(text: str) -> str:
    """``text`` for the terminal: control characters escaped, so a name cannot break a line."""
    return text.translate(_CONTROL)


def _warning_line(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    """A Python warning (ours or a dependency's) as one line, without its source line."""
    text = (str(message).strip().splitlines() or [category.__name__])[0]
    console.print(f"[yellow]warning:[/yellow] {shown(text)}", highlight=False, soft_wrap=True)


def _stop(terminated: bool) -> None:
    """The interrupt line says what was kept for the next run (``errors.resumable``)."""
    kept = resumable()
    console.print(f"[yellow]{'terminated' if terminated else 'interrupted'}[/yellow]" +
                  (f": {escape(kept)}" if kept else ""), highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED) from None


def print_json(obj: Any) -> None:
    out.print_json(json.dumps(obj, default=str))


def _weights(model: Optional[str]) -> Path:
    from .weights import resolve_weights

    return resolve_weights(model)


@app.command("info")
@guarded
def info_cmd(json_out: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Versions, devices, which backends are usable and why not, and the default model."""
    import platform

    import torch

    from .version import __version__
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
    from .encoding import video_encoders

    encoders = video_encoders()
    if json_out:
        print_json({"versions": versions, "devices": devices, "backends": backends, "default_model": default,
                    "video_encoders": encoders})
        return
    out.print(f"[bold]scgan-rt {__version__}[/bold]")
    out.print("versions: " + ", ".join(f"{k} {v or '-'}" for k, v in versions.items()), highlight=False)
    out.print(f"devices: cpu ({devices['cpu_threads']} threads)" + "".join(f", cuda: {g}" for g in devices["gpus"]))
    out.print("video encoders: " + (", ".join(f"{k}{' (10-bit)' if v else ''}" for k, v in encoders.items()) or "none"),
              highlight=False)
    out.print("backends (auto order):")
    for b in backends:
        also = "/".join(p for p in b["precisions"] if p != b["precision"])
        out.print(f"  {'[green]yes[/green]' if b['usable'] else '[red]no [/red]'} {b['name']} "
                  f"({b['precision']}{'; also ' + also if also else ''}): {b['reason']}", highlight=False)
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
    weights: Optional[str] = typer.Argument(None, help="Weights file; default: the bundled model."),
    size: int = typer.Option(I.size, "--size", help="Frame size for the GFLOPs figure."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Preset, parameter count, GFLOPs per frame and provenance of a weights file."""
    from .model import count_parameters, gflops_per_frame
    from .weights import describe, load_generator

    gen, w = load_generator(_weights(weights))
    d = describe(w)
    d["parameters"] = count_parameters(gen)
    d["gflops_per_frame"] = round(gflops_per_frame(gen, size, w.config.in_channels, with_saliency=False), 3)
    d["gflops_per_frame_with_saliency"] = round(gflops_per_frame(gen, size, w.config.in_channels), 3)
    d["size"] = size
    if json_out:
        print_json(d)
        return
    out.print(f"[bold]{w.path.name}[/bold]  preset {d['preset']}  width {w.config.width}")
    out.print(f"parameters: {d['parameters']:,}   GFLOPs/frame @ {size}: {d['gflops_per_frame']} "
              f"({d['gflops_per_frame_with_saliency']} with the saliency branch)")
    out.print(f"sha256: {d['sha256']}   created: {d['created']}   scgan-rt {d['scgan_rt_version']}")
    out.print(f"provenance: {json.dumps(d['provenance'], sort_keys=True)}", highlight=False)


def _progress(every: float = PROGRESS_SECONDS) -> Any:
    """Live bars on a terminal; plain lines every ``every`` seconds in a log."""
    if not console.is_terminal:
        return _LogProgress(every)
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}", markup=False), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=True)


class _LogProgress:
    """Progress where no terminal is (nohup, cron, a cluster job), the way ffmpeg and rsync
    log it: per task one plain line every ``every`` seconds with done/planned, the rate of
    this run's work and the ETA. Takes the calls of ``rich.progress.Progress`` that we use."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.tasks: list[dict[str, Any]] = []

    def __enter__(self) -> "_LogProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def add_task(self, description: str, total: Optional[int] = None, **fields: Any) -> int:
        self.tasks.append({"description": description, "total": total, "completed": 0, "shown": time.monotonic(),
                           "speed": None, **fields})
        return len(self.tasks) - 1

    def update(self, task: int, **changes: Any) -> None:
        t = self.tasks[task]
        t.update(changes)
        now = time.monotonic()
        if self.every > 0 and now - t["shown"] >= self.every:
            t["shown"] = now
            sys.stderr.write(_log_line(t) + "\n")
            sys.stderr.flush()


def _log_line(t: dict[str, Any]) -> str:
    done, total, speed = t["completed"], t["total"], t["speed"]
    eta = "ETA -"
    if total and speed:
        eta = f"ETA {_duration(max(0, total - done) / speed)}"
    parts = [f"{t['description'].strip()}: {done}/{total or '?'}", t.get("rate") or "-", eta]
    return ", ".join(parts)


def _per_s(rate: float) -> str:
    """Two decimals, or two significant digits for slow items (a film: 0.0022 files/s)."""
    return f"{rate:.2f}" if rate >= 0.1 else f"{rate:.2g}"


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class _RunProgress:
    """Files and video frames per second for ``colorize``'s progress, counting only this
    run's work (items and segments earlier runs finished are not in the rate)."""

    def __init__(self, prog: Any, colorizer: Any, total: int) -> None:
        self.colorizer = colorizer
        backend = colorizer.backend.name + ("+compile" if colorizer.config.compile else "")
        self.prog, self.backend, self.clock = prog, backend, time.perf_counter
        self.t0 = self.clock()
        self.task = prog.add_task(f"colorizing ({backend})", total=total, rate="")
        self.vtask: Any = None
        self.vt0: dict[str, tuple[float, int]] = {}

    def files(self, done: int, total: int, resumed: int = 0) -> None:
        dt = self.clock() - self.t0
        speed = (done - resumed) / dt if dt > 0 and done > resumed else None
        self.prog.update(self.task, completed=done, speed=speed,
                         rate=(f"{_per_s(speed)} files/s" if speed else "") + self._compiled())

    def _compiled(self) -> str:
        s = self.colorizer.compile_seconds
        return f" (compiling took {s:.0f} s)" if s else ""

    def frames(self, name: str, done: int, total: int) -> None:
        start, first = self.vt0.setdefault(name, (self.clock(), done))
        if self.vtask is None:
            self.vtask = self.prog.add_task("", total=None, rate="")
        dt = self.clock() - start
        fps = (done - first) / dt if dt > 0 and done > first else None
        self.prog.update(self.vtask, description=f"  {name} ({self.backend})", completed=done, total=total or None,
                         speed=fps, rate=(f"{fps:.1f} frames/s" if fps else "") + self._compiled())


def note(text: str) -> None:
    console.print(text, highlight=False, markup=False, soft_wrap=True)


def _encoder_preset(encoder_preset: str, preset_alias: Optional[str]) -> str:
    if preset_alias is None:
        return encoder_preset
    console.print("[yellow]warning:[/yellow] --preset is deprecated here; use --encoder-preset", highlight=False)
    return preset_alias


# colorize --help panels (80 columns: short help here, the details in the README).
IO, MODEL, COLOUR, VIDEO, LARGE, GPU = ("Input and output", "Model and device", "Colour", "Video", "Large jobs",
                                        "GPU and speed")


@app.command("colorize")
@guarded
def colorize_cmd(
    inputs: list[Path] = typer.Argument(..., help="Photos, videos and/or folders (recursive).", readable=False,
                                        metavar="INPUT", rich_help_panel=IO),
    output: Optional[str] = typer.Option(
        None, "-o", "--output", metavar="PATH", rich_help_panel=IO, help="A file for one input, else a folder "
        "mirroring the inputs (a trailing / means a folder). Default: NAME_colorized.EXT beside each file, "
        "F_colorized/ for a folder F."),
    overwrite: bool = typer.Option(I.overwrite, "--overwrite", rich_help_panel=IO, help="Redo existing outputs."),
    compare: bool = typer.Option(I.compare, "--compare", rich_help_panel=IO,
                                 help="Also write gray | colour as NAME_compare.EXT beside each output."),
    save_saliency: bool = typer.Option(I.save_saliency, "--save-saliency", rich_help_panel=IO,
                                       help="Also write NAME_saliency.png (photos)."),
    report: bool = typer.Option(False, "--report", rich_help_panel=IO,
                                help="Also write report.html: the output folder as a contact sheet."),
    json_out: bool = typer.Option(False, "--json", rich_help_panel=IO, help="Print a JSON summary."),
    model: Optional[str] = typer.Option(None, "--model", metavar="NAME|FILE", rich_help_panel=MODEL,
                                        help="default, a bundled model's name, or a weights/ONNX/engine file."),
    backend: str = typer.Option(I.backend, "--backend", metavar="NAME", rich_help_panel=MODEL,
                                help=f"{', '.join(backend_names()[:-1])} or {backend_names()[-1]}."),
    device: str = typer.Option(I.device, "--device", metavar="DEVICE", rich_help_panel=MODEL,
                               help="auto, cpu, cuda or cuda:N."),
    precision: str = typer.Option(I.precision, "--precision", metavar=PRECISION_CHOICES, rich_help_panel=MODEL,
                                  help=PRECISION_HELP),
    size: int = typer.Option(I.size, "--size", metavar="N", rich_help_panel=MODEL,
                             help="Network input size, a multiple of 256."),
    saturation: float = typer.Option(I.saturation, "--saturation", metavar="S", rich_help_panel=COLOUR,
                                     help="Scale the colour around gray (1: as predicted)."),
    chroma_smoothing: float = typer.Option(I.chroma_smoothing, "--chroma-smoothing", metavar="SIGMA",
                                           rich_help_panel=COLOUR, help=SMOOTHING_HELP),
    skip_color: bool = typer.Option(I.skip_color, "--skip-color", rich_help_panel=COLOUR,
                                    help="Skip photos that already have colour."),
    force: bool = typer.Option(I.force, "--force", rich_help_panel=COLOUR,
                               help="Recolorize colour videos (skipped otherwise)."),
    codec: str = typer.Option(I.codec, "--codec", metavar="CODEC", rich_help_panel=VIDEO,
                              help="auto (the source's family), libx264, libx265, libvpx-vp9, rawvideo, ..."),
    crf: int = typer.Option(I.crf, "--crf", metavar="N", rich_help_panel=VIDEO, help="Quality (lower is better)."),
    encoder_preset: str = typer.Option(I.encoder_preset, "--encoder-preset", metavar="PRESET", rich_help_panel=VIDEO,
                                       help="x264/x265 speed: ultrafast ... veryslow."),
    preset_alias: Optional[str] = typer.Option(None, "--preset", hidden=True),
    temporal_strength: float = typer.Option(I.temporal_strength, "--temporal-strength", metavar="S",
                                            rich_help_panel=VIDEO, help="Chroma smoothing over time, [0, 1); 0: off."),
    deinterlace: bool = typer.Option(I.deinterlace, "--deinterlace", rich_help_panel=VIDEO,
                                     help="Deinterlace interlaced videos first (bwdif)."),
    preview: int = typer.Option(I.preview, "--preview", metavar="N", rich_help_panel=VIDEO,
                                help="Only N colorized frames per video, as PNG."),
    segment_seconds: float = typer.Option(I.segment_seconds, "--segment-seconds", metavar="S", rich_help_panel=VIDEO,
                                          help="Resumable segments of a film twice as long (0: never)."),
    shard: Optional[str] = typer.Option(None, "--shard", metavar="K/N", rich_help_panel=LARGE,
                                        help="Only this share of the inputs; `status` merges the shards."),
    retry_failed: bool = typer.Option(I.retry_failed, "--retry-failed", rich_help_panel=LARGE,
                                      help="Redo items the journal says failed."),
    verify: bool = typer.Option(I.verify, "--verify", rich_help_panel=LARGE,
                                help="Check inputs' sha256, not only size + mtime."),
    wait_lock: bool = typer.Option(I.wait_lock, "--wait-lock", rich_help_panel=LARGE,
                                   help="Wait while another run writes the output folder."),
    progress_every: float = typer.Option(PROGRESS_SECONDS, "--progress-every", metavar="S", rich_help_panel=LARGE,
                                         help="A progress line every S seconds when not on a terminal (0: none)."),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="auto|ADDRESS", rich_help_panel=LARGE,
                                      help="Run on a Ray cluster; needs scgan-rt\\[ray]."),
    ray_workers: int = typer.Option(2, "--ray-workers", metavar="N", rich_help_panel=LARGE,
                                    help="Ray actors, each holding one backend."),
    gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", metavar="G", rich_help_panel=LARGE,
                                          help="GPUs per Ray actor (0: CPU actors)."),
    batch_size: str = typer.Option(I.batch_size, "--batch-size", metavar="auto|N", rich_help_panel=GPU,
                                   help="Frames per network call (auto: from free memory)."),
    compile_net: bool = typer.Option(I.compile, "--compile", rich_help_panel=GPU,
                                     help="torch.compile the network (torch backend)."),
    io_threads: int = typer.Option(I.io_threads, "--io-threads", metavar="N", rich_help_panel=GPU,
                                   help="Photo decode/encode threads (0: up to 4)."),
) -> None:
    """Colorize photos and videos at their original resolution (luminance kept, chroma predicted)."""
    from .colorizer import Colorizer
    from .errors import UsageError
    from .journal import Journal, Shard
    from .pipeline import (colorize_files, journal_root, locked_outputs, plan_jobs, preflight_outputs, settings_key,
                           shard_jobs)
    from .weights import sha256_file

    cfg = InferConfig(size=size, batch_size=parse_batch_size(batch_size), backend=backend, device=device,
                      precision=precision, compile=compile_net, io_threads=io_threads, skip_color=skip_color,
                      save_saliency=save_saliency, saturation=saturation, chroma_smoothing=chroma_smoothing,
                      overwrite=overwrite, codec=codec, crf=crf,
                      encoder_preset=_encoder_preset(encoder_preset, preset_alias),
                      temporal_strength=temporal_strength, force=force, deinterlace=deinterlace, compare=compare,
                      preview=preview,
                      retry_failed=retry_failed, verify=verify, segment_seconds=segment_seconds,
                      wait_lock=wait_lock).validate()
    started = time.time()
    skipped: list[tuple[str, str]] = []
    jobs = plan_jobs(inputs, output, preview=bool(preview), codec=cfg.codec, skipped=skipped)
    part = Shard.parse(shard)
    if part is not None:
        jobs = shard_jobs(jobs, part, cfg)
    if ray is not None and (ray_workers < 1 or gpus_per_worker < 0):
        raise UsageError("--ray-workers must be >= 1 and --gpus-per-worker >= 0")
    weights = _weights(model)
    colorizer = Colorizer.open(cfg, weights) if ray is None else None  # a bad model leaves no output folder behind
    preflight_outputs(jobs)
    root = None if preview else journal_root(inputs, output)
    with locked_outputs(jobs, root, part, cfg.wait_lock):  # one writer per output folder
        journal = Journal(root, part, settings_key(cfg, sha256_file(weights)), cfg.verify) if root else None
        if journal is not None:
            journal.check_settings(cfg.overwrite)
        try:
            if colorizer is None:
                rep = _colorize_on_ray(jobs, cfg, weights, journal, ray, ray_workers, gpus_per_worker,  # type: ignore[arg-type]
                                       progress_every)
            else:
                with _progress(progress_every) as prog:
                    bars = _RunProgress(prog, colorizer, len(jobs))
                    rep = colorize_files(jobs, colorizer, cfg, on_progress=bars.files, on_frame=bars.frames,
                                         journal=journal, shard=part, unsupported=skipped, on_note=note)
        finally:
            if journal is not None:
                journal.close()
    rep.note_unsupported(skipped)
    if report:
        rep.report = str(_write_report(rep, jobs, Path(output) if output else None, root, started))
    _print_report(rep, json_out)
    if rep.exit_code:
        raise typer.Exit(rep.exit_code)


def _colorize_on_ray(jobs: list[Any], cfg: InferConfig, weights: Path, journal: Any, address: str, workers: int,
                     gpus_per_worker: float, progress_every: float) -> Any:
    from .ray_job import colorize_on_ray

    with _progress(progress_every) as prog:
        task = prog.add_task("colorizing (ray)", total=len(jobs), rate="")
        return colorize_on_ray(jobs, cfg, weights, journal=journal, address=address, workers=workers,
                               gpus_per_worker=gpus_per_worker, on_progress=lambda d, t: prog.update(task, completed=d))


def _write_report(rep: Any, jobs: list[Any], output: Optional[Path], root: Optional[Path], since: float) -> Path:
    """The output folder's report from its journal(s); a run without one gets a sheet of itself."""
    from .report import Sheet, folder_report, run_summary

    if root is not None and root.is_dir() and any(root.glob("journal*.jsonl")):
        return folder_report(root, since)
    folder = output if output is not None and output.is_dir() else (output.parent if output is not None
                                                                     else jobs[0].dst.parent)
    sheet = Sheet(folder)
    sheet.add_run(rep, jobs)
    return sheet.write(f"scgan-rt colorize: {len(rep.done)} of {rep.total} written", run_summary(rep))


def _print_report(rep: Any, json_out: bool) -> None:
    if json_out:
        print_json(rep.as_dict())
    else:
        # Rates of this run's work only: what earlier runs finished is counted apart.
        rates = [f"{_per_s(rep.images_per_s)} files/s"] if rep.done else []
        if rep.frames:
            fps = f" at {rep.frames / rep.video_seconds:.1f} frames/s" if rep.video_seconds else ""
            rates.append(f"{rep.frames} video frames{fps}")
        out.print(f"{len(rep.done)} written ({', '.join(rates + [f'backend {rep.backend}'])}); "
                  f"{len(rep.skipped_existing)} already done, {len(rep.skipped_color)} colour skipped, "
                  f"{len(rep.failed)} failed", highlight=False)
        for path in rep.done:
            out.print(f"  -> {shown(path)}", highlight=False, soft_wrap=True)
        if rep.report:
            out.print(f"report: {shown(rep.report)}", highlight=False, soft_wrap=True)
    for w in rep.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(shown(w))}", highlight=False, soft_wrap=True)
    for path, err in rep.failed:
        console.print(f"[red]failed:[/red] {escape(shown(err))}", highlight=False, soft_wrap=True)


@app.command("status")
@guarded
def status_cmd(
    folder: Path = typer.Argument(..., help="An output folder of `colorize` (its journal)."),
    report: bool = typer.Option(False, "--report", help="Also (re)write FOLDER/report.html from the journal(s)."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Done / failed (with reasons) / pending / skipped, throughput and ETA of a (sharded) job."""
    from .journal import status

    s = status(folder)
    if report:
        from .report import folder_report

        s["report"] = str(folder_report(folder))
    if json_out:
        print_json(s)
        return
    eta = "-" if s["eta_s"] is None else f"{s['eta_s']:.0f} s"
    out.print(f"{s['folder']}: {s['done']} done, {len(s['failed'])} failed, {s['pending']} pending of "
              f"{s['planned']} planned ({len(s['journals'])} journal(s)); {s['items_per_s']:.2f} items/s, ETA {eta}",
              highlight=False)
    for reason, n in s["skipped"].items():
        out.print(f"  skipped: {n} {reason}", highlight=False)
    for f in s["failed"]:
        out.print(f"  failed: {shown(f['input'])}: {shown(f['reason'])}", highlight=False)
    if s["torn_lines"]:
        out.print(f"  torn journal lines ignored: {', '.join(s['torn_lines'])}", highlight=False)
    if report:
        out.print(f"report: {s['report']}", highlight=False, soft_wrap=True)


@app.command("evaluate")
@guarded
def evaluate_cmd(
    folder: Path = typer.Argument(..., help="Folder of colour photos (ground truth)."),
    model: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
    size: int = typer.Option(I.size, "--size", help="Evaluation size (paper: 256)."),
    backend: str = typer.Option(I.backend, "--backend", metavar=BACKEND_CHOICES),
    device: str = typer.Option(I.device, "--device", metavar=DEVICE_CHOICES),
    saturation: float = typer.Option(I.saturation, "--saturation", help="Scale the predicted colour around gray."),
    chroma_smoothing: float = typer.Option(I.chroma_smoothing, "--chroma-smoothing", metavar="SIGMA",
                                           help=SMOOTHING_HELP),
    report: bool = typer.Option(False, "--report", help="Also write FOLDER_evaluation/report.html: gray | model | "
                                "truth per photo, a CCI histogram and PSNR/SSIM against the gray baseline."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """PSNR, SSIM, CCI (paper Table I), CIEDE2000 and hue hit rate of the model vs the grayscale baseline."""
    import numpy as np

    from .colorizer import Colorizer
    from .errors import InputError
    from .images import LoadedImage
    from .metrics import evaluate

    cfg = InferConfig(size=size, backend=backend, device=device, saturation=saturation,
                      chroma_smoothing=chroma_smoothing).validate()
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder}")
    colorizer = Colorizer.open(cfg, _weights(model))

    def run(gray: np.ndarray) -> np.ndarray:
        return colorizer.colorize_batch([LoadedImage(folder, gray, None, 8, "L", "", False)])[0][0]

    sheet = _EvaluationSheet(folder) if report else None
    with _progress() as prog:
        task = prog.add_task("evaluating", total=None, rate="")
        res = evaluate(folder, run, size=cfg.size, on_progress=lambda d, t: prog.update(task, completed=d, total=t),
                       on_item=sheet.add if sheet else None)
    if sheet is not None:
        res["report"] = str(sheet.write(res))
    if json_out:
        print_json(res)
        return
    from rich.table import Table

    t = Table(title=f"{res['images']} photos at {size}x{size} (ground-truth CCI mean {res['ground_truth_cci_mean']})")
    for col in ("", "PSNR dB", "SSIM", "SSIM (dr=2, paper)", "CCI mean", "CCI in [16,20]", "CIEDE2000",
                "hue hit rate"):
        t.add_column(col)
    for name, key in (("model", "model"), ("grayscale", "grayscale_baseline")):
        s = res[key]
        t.add_row(name, f"{s['psnr']:.3f}", f"{s['ssim']:.4f}", f"{s['ssim_dr2']:.4f}", f"{s['cci_mean']:.2f}",
                  f"{100 * s['cci_ratio']:.1f}%", f"{s['ciede2000']:.2f}", f"{100 * s['hue_hit_rate']:.1f}%")
    out.print(t)


class _EvaluationSheet:
    def __init__(self, folder: Path) -> None:
        from .report import Sheet

        self.sheet = Sheet(folder.with_name(folder.name + "_evaluation"))
        self.scores: list[dict[str, float]] = []

    def add(self, path: Path, gray: Any, pred: Any, truth: Any, scores: dict[str, float]) -> None:
        import numpy as np

        from .report import Item

        pics = {"gray": self.sheet.thumb(np.repeat(gray[..., None], 3, axis=2)), "model": self.sheet.thumb(pred),
                "truth": self.sheet.thumb(truth)}
        self.sheet.items.append(Item(path.name, "done", path, None, metrics=scores, pictures=pics))
        self.scores.append(scores)

    def write(self, res: dict[str, Any]) -> Path:
        from .report import histogram_svg, scatter_svg

        s = self.scores
        charts = [histogram_svg([x["cci"] for x in s], [x["truth_cci"] for x in s], "CCI per photo"),
                  scatter_svg([(x["gray_psnr"], x["psnr"]) for x in s], "PSNR dB: model vs gray", "gray", "model"),
                  scatter_svg([(x["gray_ssim"], x["ssim"]) for x in s], "SSIM: model vs gray", "gray", "model")]
        summary = {"photos": res["images"], "model": res["model"], "grayscale": res["grayscale_baseline"],
                   "ground-truth CCI": res["ground_truth_cci_mean"]}
        return self.sheet.write(f"scgan-rt evaluate: {res['images']} photos", summary, charts)


@app.command("train")
@guarded
def train_cmd(
    data: Path = typer.Option(..., "--data", help="Colour photos (any depth); for --stage gfn a class-per-folder tree."),
    out_dir: Path = typer.Option(..., "--out", help="Run directory (last.pt, generator.safetensors, tb/, saliency/)."),
    stage: str = typer.Option(T.stage, "--stage", help="1 (L1 + attention), 2 (WGAN-GP, needs --init) or gfn."),
    preset_name: str = typer.Option("scgan", "--preset", help="Model preset (ignored with --init/--resume)."),
    saliency_dir: Optional[Path] = typer.Option(None, "--saliency-dir", help="Saliency maps mirroring --data as .png; default: computed into OUT/saliency."),
    paired_input: Optional[Path] = typer.Option(None, "--paired-input", help="Paired mode (§F): input images/.npy matched to --data targets by relative path."),
    in_channels: int = typer.Option(1, "--in-channels", help="Input channels in paired mode."),
    init: Optional[Path] = typer.Option(None, "--init", help="Stage-1 generator weights (stage 2)."),
    gfn_weights: Optional[Path] = typer.Option(None, "--gfn-weights", help="Pretrained GFN (from --stage gfn) loaded by name."),
    perceptual_weights: Optional[str] = typer.Option(None, "--perceptual-weights", help="ImageNet VGG-16 state dict (default: torch hub cache)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Default: 10 (stage 1), 30 (stage 2)."),
    batch_size: int = typer.Option(T.batch_size, "--batch-size"),
    crop: int = typer.Option(T.crop, "--crop", help="Random crop size, a multiple of 256."),
    load_size: int = typer.Option(T.load_size, "--load-size", help="Resize short side to this before cropping (0: only upscale when < crop)."),
    load_size_max: int = typer.Option(T.load_size_max, "--load-size-max", help="Multi-scale crops: draw each short side from [--load-size, this] (0: off)."),
    max_steps: int = typer.Option(T.max_steps, "--max-steps", help="Stop after this many steps (0: no limit)."),
    max_minutes: float = typer.Option(T.max_minutes, "--max-minutes", help="Stop cleanly at this wall-clock budget (0: none)."),
    resume: bool = typer.Option(False, "--resume", help="Continue OUT/last.pt exactly."),
    seed: int = typer.Option(T.seed, "--seed"),
    workers: int = typer.Option(T.workers, "--workers", help="DataLoader worker processes."),
    device: str = typer.Option("auto", "--device", metavar=DEVICE_CHOICES),
    amp: bool = typer.Option(T.amp, "--amp", help="bf16 mixed precision (CUDA only)."),
    no_attention: bool = typer.Option(False, "--no-attention", help="Ablation: no saliency branch, L_A or D_A."),
    no_gan: bool = typer.Option(False, "--no-gan", help="Ablation: stage 2 without discriminators."),
    no_perceptual: bool = typer.Option(False, "--no-perceptual", help="Ablation: no VGG perceptual loss."),
    gan_mode: str = typer.Option(T.gan_mode, "--gan-mode", help="wgangp or lsgan."),
    no_gfn: bool = typer.Option(False, "--no-gfn", help="Ablation: generator without the global feature network."),
    no_gfn_pretrain: bool = typer.Option(False, "--no-gfn-pretrain", help="Ablation: ignore --gfn-weights."),
    pixel_loss: str = typer.Option(T.pixel_loss, "--pixel-loss", help="l1 or l2."),
    d_norm: str = typer.Option(T.d_norm, "--d-norm", help="Critic normalisation: bn (paper), in or none; default: the preset's."),
    no_noise: bool = typer.Option(False, "--no-input-noise", help="Disable the paper's N(0, 0.005) input noise."),
    hflip: bool = typer.Option(T.hflip, "--hflip", help="Random horizontal flips (not in the paper)."),
    ema: float = typer.Option(T.ema_decay, "--ema", help="Also keep an EMA of the generator with this decay (e.g. 0.999) and export it (0: off)."),
    log_every: int = typer.Option(T.log_every, "--log-every", help="TensorBoard scalars every N steps."),
    sample_every: int = typer.Option(T.sample_every, "--sample-every", help="TensorBoard image grids every N steps."),
    ckpt_every: int = typer.Option(1000, "--ckpt-every", help="Also checkpoint every N steps (0: epoch ends only)."),
    gfn_net: Optional[str] = typer.Option(None, "--gfn-net", help="Global feature network: vgg16-gray (paper) or efficientnet-lite0|1|2 (ImageNet prior); default: the preset's."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="U-Net encoder: scgan (paper) or efficientnet-lite0|1|2 (ImageNet prior); default: the preset's."),
    prior_freeze_steps: int = typer.Option(T.prior_freeze_steps, "--prior-freeze-steps", help="Keep the pretrained prior frozen for the first N steps."),
    prior_lr_scale: float = typer.Option(T.prior_lr_scale, "--prior-lr-scale", help="The prior's learning rate as a fraction of the generator's."),
    perceptual_net: str = typer.Option(T.perceptual_net, "--perceptual-net", help="auto (VGG-16 if its file is found, else efficientnet-lite0), vgg16 (paper; needs the file) or efficientnet-lite0 (from the scgan-rt\\[train] extra)."),
    perceptual_stage1: bool = typer.Option(T.perceptual_stage1, "--perceptual-stage1", help="Use the perceptual loss in stage 1 too."),
    lambda_perceptual: float = typer.Option(T.lambda_perceptual, "--lambda-perceptual", help="Weight of the perceptual loss (paper: 5)."),
    ab_class: float = typer.Option(T.lambda_ab_class, "--ab-class", help="Weight of the rebalanced ab-bin classification loss (Zhang et al. 2016; 0: off)."),
    colorfulness_w: float = typer.Option(T.lambda_colorfulness, "--colorfulness", help="Weight of |CF(pred) - CF(truth)| (0: off)."),
    ciede: float = typer.Option(T.lambda_ciede, "--ciede", help="Weight of the mean CIEDE2000 of the merged prediction (0: off)."),
    merge_luma: bool = typer.Option(T.merge_luma, "--merge-luma", help="Losses see the prediction with the photo's luma put back (what colorize ships)."),
    json_out: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
) -> None:
    """Train SCGAN: stage 1, stage 2 (--init), or GFN pretraining; resumable, torchrun-aware."""
    from .config import preset
    from .train.trainer import train

    tcfg = _train_config(stage=stage, epochs=epochs, batch_size=batch_size, crop=crop, load_size=load_size,
                         load_size_max=load_size_max,
                         max_steps=max_steps, max_minutes=max_minutes, seed=seed, workers=workers, amp=amp,
                         use_attention=not no_attention, use_gan=not no_gan, use_perceptual=not no_perceptual,
                         gan_mode=gan_mode, pixel_loss=pixel_loss, d_norm=d_norm, no_noise=no_noise,
                         log_every=log_every, sample_every=sample_every, ema_decay=ema, hflip=hflip,
                         prior_freeze_steps=prior_freeze_steps, prior_lr_scale=prior_lr_scale,
                         perceptual_net=perceptual_net, perceptual_stage1=perceptual_stage1,
                         lambda_perceptual=lambda_perceptual,
                         lambda_ab_class=ab_class, lambda_colorfulness=colorfulness_w, lambda_ciede=ciede,
                         merge_luma=merge_luma)
    arch = {k: v for k, v in (("gfn_net", gfn_net), ("encoder", encoder)) if v is not None}
    mcfg = preset(preset_name, in_channels=in_channels, use_gfn=not no_gfn, **arch)
    result = train(tcfg, mcfg, data, out_dir, saliency_dir=saliency_dir, input_dir=paired_input, init=init,
                   gfn_weights=None if (no_gfn_pretrain or no_gfn) else gfn_weights,
                   perceptual_weights=perceptual_weights, resume=resume, device=device, ckpt_every=ckpt_every)
    if json_out:
        print_json(result)


def _train_config(*, stage: str, epochs: Optional[int], no_noise: bool, **fields: Any) -> TrainConfig:
    """The one place CLI flags become a ``TrainConfig`` (stage-dependent epochs, noise off)."""
    return TrainConfig(stage=stage, epochs=epochs if epochs is not None else TrainConfig.epochs_for(stage),
                       input_noise_std=0.0 if no_noise else TrainConfig.input_noise_std, **fields)


@app.command("saliency")
@guarded
def saliency_cmd(
    src: Path = typer.Argument(..., help="Folder of colour photos (any depth)."),
    maps_dir: Path = typer.Option(..., "-o", "--out", help="Maps folder: 8-bit PNGs mirroring SRC; existing maps are reused."),
    workers: int = typer.Option(2, "--workers", help="Worker processes."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Compute salient-object maps (classical minimum-barrier detector) for training."""
    from .errors import InputError
    from .train.saliency import compute_saliency_maps

    r = compute_saliency_maps(src, maps_dir, workers=workers)
    if r["total"] == 0:
        raise InputError(f"no images found under {src}")
    if json_out:
        print_json(r)
    else:
        console.print(f"{r['computed']} maps computed, {r['reused']} reused, {len(r['failed'])} failed -> {maps_dir}")

@app.command("export")
@guarded
def export_cmd(
    model: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
    output: Path = typer.Option(..., "-o", "--output", help="ONNX file to write."),
    size: int = typer.Option(I.size, "--size", help="Input size (a multiple of 256)."),
    batch: str = typer.Option("dynamic", "--batch", help="'dynamic' or MIN:OPT:MAX (default TensorRT profile)."),
    fp16: bool = typer.Option(False, "--fp16", help="FP16 graph with float32 I/O (for TensorRT 11)."),
    int8: bool = typer.Option(False, "--int8", help="INT8 QDQ graph (static calibration; ONNX Runtime CPU and "
                              "TensorRT), refused when it loses more than the quality bounds."),
    calibration: Optional[Path] = typer.Option(None, "--calibration", help="--int8: folder of real colour photos; "
                                               "1 in 5 is held out for the quality gate."),
    calibration_count: int = typer.Option(CALIBRATION_COUNT, "--calibration-count", help="--int8: photos used."),
    force: bool = typer.Option(False, "--force", help="--int8: write the model even when the gate refuses it."),
    with_saliency: bool = typer.Option(False, "--with-saliency", help="Also output the saliency map."),
    json_out: bool = typer.Option(False, "--json", help="--int8: print the gate's numbers as JSON."),
) -> None:
    """Export weights to a single-file ONNX model (SN and BN folded, opset 17, metadata)."""
    from .errors import UsageError
    from .export.onnx import export_onnx, sample_gray_images

    if int8 or calibration is not None:
        if not int8 or calibration is None or fp16:
            raise UsageError("--int8 needs --calibration DIR (and no --fp16); --calibration goes with --int8")
        _export_int8(model, output, size, batch, calibration, calibration_count, force, with_saliency, json_out)
        return
    photos = sample_gray_images(size)
    res = export_onnx(_weights(model), output, size=size, batch=batch, fp16=fp16, with_saliency=with_saliency,
                      activation_images=photos if len(photos) else None)
    out.print(f"wrote {res.path} ({res.precision}, {res.size}px, batch {res.batch}, outputs {', '.join(res.outputs)}; "
              f"sha256 {res.sha256[:12]})", highlight=False)
    if res.max_activation is not None:
        out.print(f"largest FP32 activation on {len(photos)} sample photos: {res.max_activation:.4g} "
                  f"({res.max_activation_layer}; FP16 max is 65504)", highlight=False)


def _export_int8(model: Optional[str], output: Path, size: int, batch: str, calibration: Path, count: int,
                 force: bool, with_saliency: bool, json_out: bool) -> None:
    from .export.quantize import export_int8, load_calibration

    cs = load_calibration(calibration, count, size)
    for path, why in cs.skipped:
        console.print(f"[yellow]warning:[/yellow] skipped {path}: {why}", highlight=False)
    res = export_int8(_weights(model), output, cs, size=size, batch=batch, with_saliency=with_saliency, force=force)
    if json_out:
        print_json({"path": str(res.path), "sha256": res.sha256, "precision": "int8", "method": res.method,
                    "calibration_sha256": res.calibration_sha256, "calibrated_on": res.calibrated_on,
                    "skipped": cs.skipped, "float_nodes": res.float_nodes, "gate": res.gate.as_dict()})
        return
    out.print(f"wrote {res.path} (int8 QDQ, {res.method} calibration on {res.calibrated_on} photos, calibration sha256 "
              f"{res.calibration_sha256[:12]}; sha256 {res.sha256[:12]})", highlight=False)
    out.print(f"kept in float: {', '.join(res.float_nodes)}", highlight=False)
    verdict = "within bounds" if res.gate.passed else "[red]OUTSIDE the bounds (--force)[/red]"
    out.print(f"quality gate {verdict} {res.gate.summary()}", highlight=False)


@app.command("build-engine")
@guarded
def build_engine_cmd(
    onnx: Path = typer.Option(..., "--onnx", help="ONNX model from `scgan-rt export`."),
    output: Path = typer.Option(Path("engines"), "-o", "--output", help="Engine folder (the cache)."),
    fp16: bool = typer.Option(False, "--fp16", help="FP16 (TRT 10: builder flag; TRT 11: FP16 graph)."),
    int8: bool = typer.Option(False, "--int8", help="INT8 from a QDQ model of `export --int8` (explicit quantization)."),
    batch: Optional[str] = typer.Option(None, "--batch", help=f"MIN:OPT:MAX (default: from the ONNX, else {':'.join(map(str, DEFAULT_PROFILE))})."),
    size: Optional[int] = typer.Option(None, "--size", help="Input size (default: the ONNX's)."),
    workspace: float = typer.Option(DEFAULT_WORKSPACE_GIB, "--workspace", help="Builder workspace limit in GiB."),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="Timing cache file (read + updated)."),
) -> None:
    """Build a TensorRT engine (JSON header + plan) for this GPU and TensorRT version."""
    from .export.tensorrt import build_engine

    path = build_engine(onnx, out_dir=output, fp16=fp16, batch=batch, size=size, workspace_gib=workspace,
                        timing_cache=timing_cache, int8=int8)
    out.print(f"engine: {path}", highlight=False)


@app.command("benchmark-video")
@guarded
def benchmark_video_cmd(
    clip: Path = typer.Argument(..., help="Video to time (not modified)."),
    backend: str = typer.Option(I.backend, "--backend", metavar=BACKEND_CHOICES),
    model: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
    device: str = typer.Option(I.device, "--device", metavar=DEVICE_CHOICES),
    precision: str = typer.Option(I.precision, "--precision", metavar=PRECISION_CHOICES, help=PRECISION_HELP),
    batch_size: str = typer.Option(I.batch_size, "--batch-size", help="auto or a number."),
    compile_net: bool = typer.Option(I.compile, "--compile", help="torch.compile the network (torch backend)."),
    codec: str = typer.Option(I.codec, "--codec"),
    crf: int = typer.Option(I.crf, "--crf"),
    encoder_preset: str = typer.Option(I.encoder_preset, "--encoder-preset", help="x264/x265 speed preset."),
    preset_alias: Optional[str] = typer.Option(None, "--preset", hidden=True),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Video speed: model-only, codec-only and end-to-end frames/s against the pipeline bound."""
    from .benchmark import benchmark_video

    cfg = InferConfig(batch_size=parse_batch_size(batch_size), backend=backend, device=device, compile=compile_net,
                      precision=precision, codec=codec, crf=crf,
                      encoder_preset=_encoder_preset(encoder_preset, preset_alias)).validate()
    r = benchmark_video(clip, _weights(model), cfg)
    if json_out:
        print_json(r)
        return
    out.print(f"{Path(r['clip']).name} {r['width']}x{r['height']}, {r['frames']} frames, backend {r['backend']} "
              f"({r['device']}, {r['precision']}), batch {r['batch']}, {r['codec']} crf {r['crf']} {r['preset']}", highlight=False)
    out.print(f"model-only {r['model_fps']:.1f} fps | codec-only {r['codec_fps']:.1f} fps | bound {r['bound']} = "
              f"{r['bound_fps']:.1f} fps | end-to-end {r['e2e_fps']:.1f} fps = {r['e2e_vs_bound']:.2f} x bound | "
              f"peak RSS {r['peak_rss_mb']:.0f} MB", highlight=False)


@app.command("benchmark-photos")
@guarded
def benchmark_photos_cmd(
    folder: Path = typer.Argument(..., help="Folder of photos to time (not modified; outputs go to a temp folder)."),
    backend: str = typer.Option(I.backend, "--backend", metavar=BACKEND_CHOICES),
    model: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
    device: str = typer.Option(I.device, "--device", metavar=DEVICE_CHOICES),
    batch_size: str = typer.Option(I.batch_size, "--batch-size", help="auto or a number."),
    io_threads: int = typer.Option(I.io_threads, "--io-threads", help="Photo decode/encode threads, 0 = up to 4."),
    limit: int = typer.Option(0, "--limit", help="Only the first N photos (0 = all)."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Photo speed: decode, network, merge and encode alone, end to end, and end to end over their floor."""
    from .benchmark import benchmark_photos
    from .errors import UsageError

    if not folder.is_dir():
        raise UsageError(f"not a folder: {folder}")
    if limit < 0:
        raise UsageError(f"--limit must be >= 0, got {limit}")
    cfg = InferConfig(batch_size=parse_batch_size(batch_size), backend=backend, device=device,
                      io_threads=io_threads).validate()
    r = benchmark_photos(folder, _weights(model), cfg, limit)
    if json_out:
        print_json(r)
        return
    out.print(f"{r['photos']} photos, {r['megapixels']:.1f} MP, backend {r['backend']} ({r['device']}), "
              f"batch {r['batch']}", highlight=False)
    out.print(" | ".join(f"{k} {r[k + '_s']:.2f} s ({r[k + '_mp_s']:.0f} MP/s)"
                         for k in ("decode", "network", "merge", "encode")), highlight=False)
    out.print(f"end to end {r['e2e_s']:.2f} s = {r['photos_per_s']:.2f} photos/s, {r['mp_per_s']:.1f} MP/s | "
              f"floor (decode+network+encode) {r['floor_s']:.2f} s | {r['e2e_vs_floor']:.2f} x floor | "
              f"peak RSS {r['peak_rss_mb']:.0f} MB", highlight=False)


@app.command("evaluate-video")
@guarded
def evaluate_video_cmd(
    source: Path = typer.Argument(..., help="The original (gray) video."),
    colorized: Path = typer.Argument(..., help="Its colorized version."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Frames, timing, luma fidelity, colourfulness and flicker of a colorized video."""
    from .metrics import evaluate_video

    r = evaluate_video(source, colorized)
    if json_out:
        print_json(r)
        return
    out.print(f"frames {r['frames_in']} -> {r['frames_out']}, max timestamp error {r['max_timestamp_error_s']} s, "
              f"luma PSNR {r['luma_psnr_db']} dB", highlight=False)
    out.print(f"flicker {r['flicker_out']} (source {r['flicker_in']}) code values per static pixel per frame "
              f"({100 * r['static_pixel_share']:.0f}% static), mean chroma {r['mean_chroma']}, "
              f"scene cuts {r['scene_cuts']}", highlight=False)


@app.command("benchmark")
@guarded
def benchmark_cmd(
    backend: str = typer.Option(I.backend, "--backend", metavar=f"{BACKEND_CHOICES}[,...]",
                                help="A backend, or a comma list (each timed in its own process)."),
    model: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
    preset_name: Optional[str] = typer.Option(None, "--preset", help="Random-init model of this preset instead."),
    batch_size: int = typer.Option(BENCH_BATCH, "--batch-size", "--batch", help="Frames per call."),
    size: int = typer.Option(I.size, "--size"),
    device: str = typer.Option(I.device, "--device", metavar=DEVICE_CHOICES),
    precision: str = typer.Option(I.precision, "--precision", metavar=f"{PRECISION_CHOICES}[,...]",
                                  help="A precision, or a comma list (each timed in its own process)."),
    iters: int = typer.Option(BENCH_ITERS, "--iters", help="Timed calls (after warm-up)."),
    max_seconds: float = typer.Option(BENCH_SECONDS, "--max-seconds", help="Stop timing after this long (>= 3 calls)."),
    json_out: bool = typer.Option(False, "--json", help="JSON: fps, latency_ms_p50, latency_ms_p95, peak_rss_mb."),
) -> None:
    """Model-only speed: frames/s, latency p50/p95 and peak RSS per backend (same weights)."""
    import tempfile

    from .benchmark import preset_weights, run_benchmark, run_isolated
    from .errors import UsageError

    if model is not None and preset_name is not None:
        raise UsageError("pass --model or --preset, not both")
    names = [b.strip() for b in backend.split(",") if b.strip()]
    precs = [p.strip() for p in precision.split(",") if p.strip()]
    runs = [(n, p) for n in names for p in precs]
    for n, p in runs:
        InferConfig(backend=n, device=device, size=size, batch_size=batch_size, precision=p).validate()
    if iters < 1:
        raise UsageError(f"--iters must be >= 1, got {iters}")
    with tempfile.TemporaryDirectory(prefix="scgan-bench-") as td:
        weights = preset_weights(preset_name, td) if preset_name else _weights(model)
        if len(runs) == 1:
            results = [run_benchmark(names[0], weights, batch=batch_size, size=size, device=device, iters=iters,
                                     max_seconds=max_seconds, precision=precs[0])]
        else:
            results = [run_isolated(n, weights, batch_size, size, device, iters, max_seconds, p) for n, p in runs]
    label = preset_name or Path(str(weights)).name
    for r in results:
        r["model"] = label
    if json_out:
        print_json(results[0] if len(results) == 1 else results)
        return
    _print_benchmark(results, label)


def _print_benchmark(results: list[dict[str, Any]], label: str) -> None:
    out.print(f"{'backend':<14}{'device':<8}{'prec':<6}{'batch':>6}{'fps':>9}{'p50 ms':>10}{'p95 ms':>10}{'RSS MB':>9}  model")
    for r in results:
        out.print(f"{r['backend']:<14}{r['device']:<8}{r['precision']:<6}{r['batch']:>6}{r['fps']:>9.2f}{r['latency_ms_p50']:>10.1f}"
                  f"{r['latency_ms_p95']:>10.1f}{r['peak_rss_mb']:>9.0f}  {label}", highlight=False)
    if len(results) > 1:
        base = results[0]["fps"]
        first = f"{results[0]['backend']} {results[0]['precision']}"
        for r in results[1:]:
            out.print(f"{r['backend']} {r['precision']} / {first}: {r['fps'] / base:.2f}x", highlight=False)


def run() -> None:
    """Run the app and leave the process with its exit code (see ``scgan_rt.__main__``)."""
    import atexit

    try:
        app()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt as e:  # while Typer builds the command, before `guarded` runs
        terminated = isinstance(e, Terminated)
        console.print(f"[yellow]{'terminated' if terminated else 'interrupted'}[/yellow]")
        code = EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    code = exit_code_after_signal(code)
    # Exit without interpreter teardown: a native thread pool destroyed by a static
    # destructor can abort() ("terminate called without an active exception") after the
    # run already ended cleanly. atexit handlers and buffered output still go out first.
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def exit_code_after_signal(code: int) -> int:
    """A recorded SIGINT/SIGTERM decides the exit code, whatever the code it interrupted
    made of it (an import it broke, click's own Ctrl-C handling, native code)."""
    import signal

    sig = signalled()
    if sig is None:
        return code
    return EXIT_TERMINATED if sig == signal.SIGTERM else EXIT_INTERRUPTED


if __name__ == "__main__":
    run()
