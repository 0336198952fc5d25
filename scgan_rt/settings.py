"""Inference settings: every knob of the colorization pipeline, defaulted once, checked once.

The CLI takes its option defaults from these fields; functions below the CLI take a
validated ``InferConfig`` and never re-default a setting.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .backends import check_backend, check_device, check_precision
from .config import check_size
from .errors import UsageError

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
# ``scgan-rt benchmark``: model-only timing of one batch, repeated.
BENCH_BATCH = 1
BENCH_ITERS = 20
BENCH_SECONDS = 20.0  # stop timing after this long (at least 3 calls)
PROGRESS_SECONDS = 10.0  # a plain progress line this often when stderr is not a terminal (logs)
# ``--batch-size auto``: frames per network call on the CPU (throughput is flat beyond it,
# memory is not) ...
CPU_BATCH = 4
# ... and on a GPU, the largest power of two whose frames fit in this share of the free
# memory, at most AUTO_MAX_BATCH (the bare FP16 forward of `scgan` on an H200 ran at
# 640 / 653 / 655 frames/s at batch 16 / 64 / 96: nothing is won beyond 64).
AUTO_MEMORY_SHARE = 0.5
AUTO_MAX_BATCH = 64
# Device bytes per full-resolution pixel a frame holds while its batch is in flight: the
# uploaded plane (up to 2), its float copy (4) and the downloaded chroma codes (2).
DEVICE_BYTES_PER_PIXEL = 8
# Host bytes a frame of a batch adds on the CPU per network input pixel (size x size): the
# network's activations. Measured with the default model, torch CPU backend, a 64-frame film:
# --batch-size 4 -> 64 raised peak RSS from 1.00 to 3.87 GB at 640x480 and from 0.92 to 3.79 GB
# at 160x120 (about 47 MB a frame at size 256, whatever the frame size).
HOST_NET_BYTES_PER_INPUT_PIXEL = 720
# The full-resolution photo merge works on strips of about this many pixels: on the CPU
# its float buffers (20 bytes a pixel, 5 MB) stay in the last-level cache between passes
# (65,536 and 1,048,576 were 10-15 % slower on the 2-core VM); on a GPU bigger strips
# keep kernel launches few.
STRIP_PIXELS = 262_144
DEVICE_STRIP_PIXELS = 4_194_304
# Pillow's hard decompression-bomb limit: larger images are refused before decoding.
PILLOW_MAX_PIXELS = 178_956_970
# Upper bound of --chroma-smoothing: at 256, sigma 8 already mixes colour across 49 network
# pixels, a fifth of the frame.
MAX_CHROMA_SMOOTHING = 8.0


@dataclass(frozen=True)
class InferConfig:
    size: int = 256  # network input size; multiples of 256 (8 stride-2 stages)
    batch_size: int | str = "auto"  # frames per network call; auto: see CPU_BATCH / AUTO_MAX_BATCH
    backend: str = "auto"
    device: str = "auto"
    # auto: each backend's accurate choice (fp32 on the CPU, fp16 on CUDA; see `scgan-rt info`);
    # int8 is a QDQ model calibrated on the bundled photos (or an `export --int8` file as --model).
    precision: str = "auto"
    skip_color: bool = False
    save_saliency: bool = False
    saturation: float = 1.0  # scales the predicted chroma around neutral, before the gamut step
    # Gaussian sigma, in network pixels, of the low-pass on the predicted chroma (0: off);
    # chosen on training photos (docs/decisions.md, "Chroma smoothing").
    chroma_smoothing: float = 1.5
    overwrite: bool = False
    retry_failed: bool = False  # redo items the journal records as failed (skipped otherwise)
    io_threads: int = 0  # threads decoding and encoding photos; 0: min(IO_THREADS, cores)
    compile: bool = False  # torch.compile the network (torch backend); first batches pay its cost
    verify: bool = False  # also compare inputs' sha256 with the journal's before skipping them
    wait_lock: bool = False  # wait for another run's lock on an output folder instead of refusing
    max_pixels: int = PILLOW_MAX_PIXELS
    # Video
    codec: str = "auto"  # auto: the source's family (VP9, HEVC, AV1) where an encoder exists, else H.264
    crf: int = 18
    encoder_preset: str = "medium"  # x264/x265 speed preset
    temporal_strength: float = 0.7  # chroma EMA weight on static pixels; 0 = per-frame
    force: bool = False  # colorize footage that already has colour
    deinterlace: bool = False  # bwdif interlaced sources first (their luma is then the deinterlaced picture)
    compare: bool = False  # also write gray | colour side by side (NAME_compare.EXT beside the output)
    preview: int = 0  # >0: only write this many evenly spaced colorized frames as PNG
    segment_seconds: float = 60.0  # films at least twice this long go in resumable segments; 0: never
    queue_frames: int = 16  # frames in flight per pipeline queue (bounds memory)

    def validate(self) -> "InferConfig":
        check_size(self.size)
        check_backend(self.backend)
        check_device(self.device)
        check_precision(self.precision)
        if not 0 <= self.saturation <= 4:
            raise UsageError(f"--saturation must be in [0, 4], got {self.saturation}")
        if not 0 <= self.chroma_smoothing <= MAX_CHROMA_SMOOTHING:
            raise UsageError(f"--chroma-smoothing must be in [0, {MAX_CHROMA_SMOOTHING:g}] network pixels, "
                             f"got {self.chroma_smoothing}")
        parse_batch_size(self.batch_size)
        if self.io_threads < 0:
            raise UsageError(f"--io-threads must be >= 0, got {self.io_threads}")
        if self.compile and self.backend not in ("auto", "torch"):
            raise UsageError(f"--compile applies to the torch backend, not {self.backend}")
        if not 0 <= self.temporal_strength < 1:
            raise UsageError(f"--temporal-strength must be in [0, 1), got {self.temporal_strength}")
        if not 0 <= self.crf <= 63:
            raise UsageError(f"--crf must be in 0..63, got {self.crf}")
        if self.codec in ("auto", "libx264", "libx265") and self.encoder_preset not in X264_PRESETS:
            raise UsageError(f"--encoder-preset must be one of {', '.join(X264_PRESETS)}, got {self.encoder_preset!r}")
        if self.preview < 0:
            raise UsageError(f"--preview must be >= 0, got {self.preview}")
        if not (math.isfinite(self.segment_seconds) and self.segment_seconds >= 0):
            raise UsageError(f"--segment-seconds must be a number >= 0 (0: never), got {self.segment_seconds}")
        if self.queue_frames < 1:
            raise UsageError(f"queue_frames must be >= 1, got {self.queue_frames}")
        return self

    def replace(self, **changes: Any) -> "InferConfig":
        return dataclasses.replace(self, **changes).validate()


def parse_batch_size(value: int | str) -> int | str:
    """``auto`` or a positive whole number (as given on the command line or in code)."""
    if value == "auto":
        return value
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(n) != str(value).strip():
        raise UsageError(f"--batch-size must be auto or a whole number >= 1, got {value!r}")
    return n


def default(name: str) -> Any:
    """The default of an ``InferConfig`` field (what the CLI shows and uses)."""
    return {f.name: f.default for f in dataclasses.fields(InferConfig)}[name]
