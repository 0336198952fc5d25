"""INT8 post-training quantization of an exported FP32 ONNX generator to a QDQ graph.

One file serves both runtimes: ONNX Runtime's CPU kernels and TensorRT's explicit
quantization. TensorRT takes only symmetric INT8 (zero point 0), so activations and
weights are signed INT8, symmetric; weights per output channel.

* Calibration: gray 256 crops of real photos in a folder (short side resized, centre
  crop, BT.601 luminance), one in ``HOLDOUT_EVERY`` held out for the quality gate.
* The exporter's shape arithmetic is folded first (``quant_pre_process``).
* Nodes kept in float (``float_nodes``): the first conv and the ops before it (they see
  the raw gray input), the decoder levels from 1/8 of the frame up (they carry the colour),
  the last conv feeding the Tanh colour head, the head itself, and any op between float
  ones; their names go into the metadata (``int8_float_nodes``) with the calibration set's
  hash (``calibration_sha256``).
* Quality gate (``gate``): FP32 vs INT8 on the held-out photos: PSNR to the truth within
  ``MAX_PSNR_DROP_DB``, colourfulness within ``MAX_CCI_CHANGE``, mean |chroma| difference
  to FP32 within ``MAX_CHROMA_DIFF`` 8-bit code levels.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from scgan_rt.errors import InputError, ModelError, UsageError
from scgan_rt.images import SAMPLES_DIR, is_supported

from .onnx import INPUT_NAME, OUTPUT_RGB, _save_checked, cache_dir, export_onnx, get_metadata, load_onnx, set_metadata

CALIBRATION_COUNT = 256
HOLDOUT_EVERY = 5  # every 5th photo is held out of calibration for the gate
CALIBRATION_METHOD = "minmax"  # measured: as good as percentile on scgan-lite-v1, 9x faster to calibrate (README)
PERCENTILE = 99.999
FLOAT_DECODER_FROM = 8  # decoder levels at >= 1/8 of the frame stay float (measured, docs/decisions.md)
METHODS = ("minmax", "entropy", "percentile")
# Quality bounds of an INT8 model against its FP32 source (the targets).
MAX_PSNR_DROP_DB = 0.2
MAX_CCI_CHANGE = 0.05
MAX_CHROMA_DIFF = 1.5
# Bundled real photos: the calibration set when none is given (``--precision int8``).
DEFAULT_CALIBRATION = SAMPLES_DIR / "photos"


# --------------------------------------------------------------------------- calibration set


@dataclass
class CalibrationSet:
    """Gray crops (``N x 1 x S x S`` in [-1, 1]) and colour truths (``N x S x S x 3`` in [0, 1])."""

    files: list[Path]
    gray: np.ndarray
    rgb: np.ndarray
    sha256: str
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def split(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(calibration gray, held-out gray, held-out truth): every ``HOLDOUT_EVERY``-th photo
        is held out; a set too small to spare one is calibrated on whole (no holdout)."""
        idx = np.arange(len(self.files))
        held = (idx % HOLDOUT_EVERY) == HOLDOUT_EVERY - 1
        if not held.any() or held.all():
            return self.gray, self.gray[:0], self.rgb[:0]
        return self.gray[~held], self.gray[held], self.rgb[held]


def _crop_rgb(path: Path, size: int) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        return np.asarray(ImageOps.fit(im, (size, size), Image.BICUBIC), np.float32) / 255


def load_calibration(folder: str | os.PathLike[str], count: int = CALIBRATION_COUNT, size: int = 256) -> CalibrationSet:
    """Up to ``count`` photos of ``folder`` (sorted, recursive); unreadable ones are skipped
    and counted. The hash covers each used file's bytes, ``count`` and ``size``."""
    from scgan_rt.color import luma_of

    root = Path(folder)
    if not root.is_dir():
        raise UsageError(f"--calibration must be a folder of photos, got {root}")
    if count < 1:
        raise UsageError(f"--calibration-count must be >= 1, got {count}")
    files, rgbs, skipped = [], [], []
    h = hashlib.sha256(f"scgan-calibration:{size}".encode())
    for p in sorted(f for f in root.rglob("*") if f.is_file() and is_supported(f)):
        if len(files) >= count:
            break
        try:
            rgb = _crop_rgb(p, size)
        except Exception as e:  # one unreadable photo is skipped, not fatal
            skipped.append((str(p), str(e).splitlines()[0][:120] if str(e) else type(e).__name__))
            continue
        files.append(p)
        rgbs.append(rgb)
        h.update(p.read_bytes())
    if not files:
        raise InputError(f"no readable photos under {root} to calibrate on")
    rgb = np.stack(rgbs)
    gray = np.stack([luma_of(a) for a in rgb])[:, None].astype(np.float32) * 2 - 1
    return CalibrationSet(files, gray, rgb, h.hexdigest(), skipped)


class _Reader:
    """onnxruntime ``CalibrationDataReader`` over photos, one per ``get_next``; ``set_range``
    lets calibration run in strides (histograms merged per stride, not every activation of
    every photo held at once)."""

    def __init__(self, gray: np.ndarray) -> None:
        self.gray = gray
        self._it: Iterator[np.ndarray] = iter(gray)

    def __len__(self) -> int:
        return len(self.gray)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._it = iter(self.gray[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {INPUT_NAME: np.ascontiguousarray(x[None], np.float32)}


def _stride(n: int, most: int = 8) -> int:
    """The largest divisor of ``n`` up to ``most`` (ONNX Runtime wants equal strides)."""
    return max(d for d in range(1, min(n, most) + 1) if n % d == 0)


# --------------------------------------------------------------------------- graph


def float_nodes(model: Any) -> list[str]:
    """Nodes kept in float: the first convs (those the gray input reaches through no other
    conv), the decoder from ``1 / FLOAT_DECODER_FROM`` of the frame up (``_fine_decoder``),
    the conv(s) feeding each output and the head's ops after them (Tanh / Sigmoid)."""
    keep = list(dict.fromkeys(_input_and_head(model) + _fine_decoder(model)))
    return keep + _sandwiched(model, set(keep))


def _fine_decoder(model: Any) -> list[str]:
    """Ops after the first upsampling whose output is at least 1 / FLOAT_DECODER_FROM of the
    input's height. Measured on scgan-prior: quantizing these decoder levels is what costs the
    colour (CCI -6 %, chroma 2.2 levels); with them float the gate passes (docs/decisions.md)."""
    import onnx

    graph = onnx.shape_inference.infer_shapes(model).graph
    heights = {v.name: _height(v) for v in [*graph.value_info, *graph.output, *graph.input]}
    frame = max((_height(i) for i in graph.input), default=0)
    producers, consumers = _links(graph)
    keep, seen = [], set()
    frontier = [n for n in graph.node if n.op_type == "Resize"]
    while frontier:
        n = frontier.pop()
        if n.name in seen:
            continue
        seen.add(n.name)
        h = heights.get(n.output[0], 0)
        if not frame or not h or h * FLOAT_DECODER_FROM >= frame:  # unknown size: float, the safe side
            keep.append(n.name)
            # the skip concat feeding a float upsampling too: one shared INT8 scale over the
            # skip and the decoder features costs 0.7 chroma levels (measured)
            source = producers.get(n.input[0])
            if n.op_type == "Resize" and source is not None and source.op_type == "Concat":
                keep.append(source.name)
        frontier.extend(c for o in n.output for c in consumers.get(o, []))
    order = {n.name: i for i, n in enumerate(graph.node)}
    return sorted(set(keep), key=order.__getitem__)


def _links(graph: Any) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """(tensor -> producing node, tensor -> consuming nodes in graph order)."""
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    return producers, consumers


def _height(value: Any) -> int:
    dims = value.type.tensor_type.shape.dim
    return dims[2].dim_value if len(dims) == 4 else 0


def _input_and_head(model: Any) -> list[str]:
    graph = model.graph
    producers, consumers = _links(graph)
    first = []
    reached, frontier = set(), [i.name for i in graph.input]
    while frontier:
        t = frontier.pop()
        for n in consumers.get(t, []):
            if n.name not in reached:
                reached.add(n.name)
                if n.op_type == "Conv":
                    first.append(n)
                else:
                    frontier.extend(n.output)
    # The ops between the input and the first convs (normalisation, padding) too: a float
    # conv behind an INT8 copy of its input would see the quantized gray anyway.
    keep = [name for conv in first for name in _chain_to_conv(producers.get(conv.input[0]), producers)]
    keep += [conv.name for conv in first]
    for out in graph.output:
        keep += _chain_to_conv(producers.get(out.name), producers, include_conv=True)
    return keep


def _chain_to_conv(node: Any, producers: dict[str, Any], include_conv: bool = False) -> list[str]:
    """``node`` and its producers back to the nearest conv (first data inputs)."""
    chain = []
    while node is not None and node.op_type != "Conv":
        chain.append(node.name)
        node = next((producers[i] for i in node.input if i in producers), None)
    if node is not None and include_conv:
        chain.append(node.name)
    return chain


def _sandwiched(model: Any, keep: set[str]) -> list[str]:
    """Ops whose every producer and consumer stays float: quantizing one alone adds a
    Q/DQ pair and its rounding error and runs no INT8 kernel."""
    graph = model.graph
    producers, consumers = _links(graph)
    outputs = {o.name for o in graph.output}
    found = []
    for n in graph.node:
        ins = [producers[i] for i in n.input if i in producers]
        outs = [c for o in n.output for c in consumers.get(o, [])]
        if (n.name not in keep and ins and all(p.name in keep for p in ins)
                and all(c.name in keep for c in outs) and (outs or set(n.output) & outputs)):
            found.append(n.name)
    return found


def _method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    if name not in METHODS:
        raise UsageError(f"calibration method must be one of {', '.join(METHODS)}, got {name!r}")
    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[name]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's tooling prints progress to stdout, advice to the root logger and
    warnings: keep all of it out of the command's output (``--json`` included)."""
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def quantize_qdq(fp32: str | os.PathLike[str], out: str | os.PathLike[str], calib_gray: np.ndarray,
                 exclude: Sequence[str] | None = None, method: str = CALIBRATION_METHOD) -> list[str]:
    """Static QDQ quantization of ``fp32`` into ``out`` (not the final file: no metadata);
    returns the nodes kept in float."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # Fold the exporter's shape arithmetic first (constant pads become conv padding, 225
    # Constant and 108 shape ops go): fewer ops for the quantizer to wrap in Q/DQ pairs.
    # Symbolic shape inference cannot follow the reflection pads; ONNX's own suffices.
    folded = Path(out).with_name(Path(out).name + ".folded.onnx")
    with _quiet():
        quant_pre_process(str(fp32), str(folded), skip_symbolic_shape=True)
    try:
        return _quantize(folded, out, calib_gray, exclude, method)
    finally:
        folded.unlink(missing_ok=True)


def _quantize(fp32: Path, out: str | os.PathLike[str], calib_gray: np.ndarray, exclude: Sequence[str] | None,
              method: str) -> list[str]:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    model = load_onnx(fp32)
    keep = float_nodes(model) if exclude is None else list(exclude)
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True,  # TensorRT: zero point 0
             "CalibPercentile": PERCENTILE, "CalibStridedMinMax": _stride(len(calib_gray))}
    with _quiet():
        try:
            quantize_static(str(fp32), str(out), _Reader(calib_gray), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=keep, calibrate_method=_method(method), extra_options=extra)
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"INT8 calibration failed: {str(e).splitlines()[0][:200]}") from None
    return keep


# --------------------------------------------------------------------------- quality gate


@dataclass
class GateResult:
    """FP32 vs INT8 on held-out photos; ``passed`` when every loss is within its bound."""

    images: int
    source: str  # where the photos came from: "holdout" or the bundled samples
    psnr_fp32: float
    psnr_int8: float
    cci_fp32: float
    cci_int8: float
    chroma_diff: float  # mean |Cb, Cr| difference to FP32, 8-bit code levels

    @property
    def psnr_drop(self) -> float:
        return self.psnr_fp32 - self.psnr_int8

    @property
    def cci_change(self) -> float:
        return abs(self.cci_int8 - self.cci_fp32) / max(self.cci_fp32, 1e-6)

    @property
    def passed(self) -> bool:
        return (self.psnr_drop <= MAX_PSNR_DROP_DB and self.cci_change <= MAX_CCI_CHANGE
                and self.chroma_diff <= MAX_CHROMA_DIFF)

    def summary(self) -> str:
        return (f"on {self.images} {self.source} photos: PSNR {self.psnr_int8:.2f} vs FP32 {self.psnr_fp32:.2f} dB "
                f"(drop {self.psnr_drop:.2f}, bound {MAX_PSNR_DROP_DB}), CCI {self.cci_int8:.2f} vs {self.cci_fp32:.2f} "
                f"({100 * self.cci_change:.1f} %, bound {100 * MAX_CCI_CHANGE:.0f} %), chroma diff "
                f"{self.chroma_diff:.2f} code levels (bound {MAX_CHROMA_DIFF})")

    def as_dict(self) -> dict[str, Any]:
        d = {k: round(v, 4) if isinstance(v, float) else v for k, v in self.__dict__.items()}
        return {**d, "psnr_drop": round(self.psnr_drop, 4), "cci_change": round(self.cci_change, 4),
                "passed": self.passed}


def run_onnx(path: str | os.PathLike[str], gray: np.ndarray, batch: int = 4) -> np.ndarray:
    """RGB prediction of an ONNX generator on the CPU, ``batch`` photos per call."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run([OUTPUT_RGB], {INPUT_NAME: gray[i:i + batch]})[0]
                           for i in range(0, len(gray), batch)])


def _colour(pred: np.ndarray, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(RGB in [0, 1] ``N x S x S x 3`` with the input's luminance, CbCr ``N x 2 x S x S``):
    what the colorizer makes of a prediction."""
    import torch

    from scgan_rt.color import chroma_from_prediction, merge_luminance

    cbcr = chroma_from_prediction(torch.from_numpy(pred).double())
    rgb = merge_luminance(torch.from_numpy((gray + 1) / 2).double(), cbcr)
    return rgb.permute(0, 2, 3, 1).numpy(), cbcr.numpy()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(1 / mse))


def _cci(rgb01: np.ndarray) -> float:
    import torch

    from scgan_rt.color import colorfulness

    x = torch.from_numpy(np.round(np.clip(rgb01, 0, 1) * 255)).permute(0, 3, 1, 2)
    return float(colorfulness(x).mean())


def gate(fp32: str | os.PathLike[str], int8: str | os.PathLike[str], gray: np.ndarray, truth: np.ndarray,
         source: str = "held-out") -> GateResult:
    """Score FP32 and INT8 on ``gray`` against ``truth`` (mean PSNR / CCI over photos)."""
    rgb32, c32 = _colour(run_onnx(fp32, gray), gray)
    rgb8, c8 = _colour(run_onnx(int8, gray), gray)
    p32 = float(np.mean([_psnr(a, t) for a, t in zip(rgb32, truth)]))
    p8 = float(np.mean([_psnr(a, t) for a, t in zip(rgb8, truth)]))
    return GateResult(len(gray), source, p32, p8, _cci(rgb32), _cci(rgb8), float(np.abs(c8 - c32).mean() * 255))


# --------------------------------------------------------------------------- export + cache


@dataclass
class Int8Result:
    path: Path
    sha256: str
    float_nodes: list[str]
    calibration_sha256: str
    calibrated_on: int
    gate: GateResult
    method: str
    metadata: dict[str, str] = field(default_factory=dict)


def _gate_set(cs: CalibrationSet, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(calibration gray, gate gray, gate truth, gate source): the holdout, or the bundled
    photos when the set is too small to hold any out."""
    cal, held_gray, held_rgb = cs.split()
    if len(held_gray):
        return cal, held_gray, held_rgb, "held-out"
    samples = load_calibration(DEFAULT_CALIBRATION, CALIBRATION_COUNT, size)
    return cal, samples.gray, samples.rgb, "bundled sample"


def export_int8(weights: str | os.PathLike[str], out: str | os.PathLike[str], calibration: CalibrationSet,
                size: int = 256, with_saliency: bool = False, batch: Any = "dynamic", force: bool = False,
                method: str = CALIBRATION_METHOD, exclude: Sequence[str] | None = None) -> Int8Result:
    """FP32 export -> static INT8 QDQ -> quality gate -> ``out`` (atomic, with metadata).

    Refuses with ``ModelError`` (nothing written) when the gate fails, unless ``force``;
    a forced file records ``int8_gate: failed`` in its metadata."""
    out = Path(out)
    cal, gate_gray, gate_rgb, source = _gate_set(calibration, size)
    with tempfile.TemporaryDirectory(prefix="scgan-int8-") as td:
        fp32 = Path(td) / "fp32.onnx"
        res32 = export_onnx(weights, fp32, size=size, batch=batch, with_saliency=with_saliency)
        q = Path(td) / "int8.onnx"
        keep = quantize_qdq(fp32, q, cal, exclude=exclude, method=method)
        g = gate(fp32, q, gate_gray, gate_rgb, source)
        if not g.passed and not force:
            raise ModelError(f"INT8 loses too much {g.summary()}; calibrate on more (and more varied) photos, "
                             "or pass --force to write it anyway")
        proto = load_onnx(q)
    meta = {**res32.metadata, "precision": "int8", "int8_float_nodes": ",".join(keep),
            "int8_method": method, "calibration_sha256": calibration.sha256,
            "calibration_photos": str(len(cal)), "int8_gate": "passed" if g.passed else "failed",
            "int8_gate_scores": g.as_dict()}
    set_metadata(proto, meta)
    sha = _save_checked(proto, out)
    return Int8Result(out, sha, keep, calibration.sha256, len(cal), g, method, get_metadata(proto))


def cached_int8(weights: str | os.PathLike[str], size: int = 256, with_saliency: bool = False,
                sha256: str | None = None, calibration: str | os.PathLike[str] = DEFAULT_CALIBRATION) -> Path:
    """The INT8 QDQ model of ``weights``, calibrated on ``calibration`` (the bundled photos
    by default), built once into the cache and reused while its recorded weights and
    calibration hashes match. A build over the gate's bounds is kept but warned about."""
    from scgan_rt.weights import sha256_file

    sha = sha256 or sha256_file(weights)
    cs = load_calibration(calibration, CALIBRATION_COUNT, size)
    name = f"{sha[:20]}-{size}-{'rgb+sal' if with_saliency else 'rgb'}-int8-{cs.sha256[:12]}.onnx"
    path = cache_dir("onnx") / name
    if path.is_file():
        try:
            meta = get_metadata(load_onnx(path, load_external=False))
            if meta.get("weights_sha256") == sha and meta.get("calibration_sha256") == cs.sha256:
                return path
        except ModelError:
            pass  # corrupt / stale cache entry: rebuild over it
    res = export_int8(weights, path, cs, size=size, with_saliency=with_saliency, force=True)
    if not res.gate.passed:
        warnings.warn(f"INT8 model of {Path(weights).name} is outside the quality bounds {res.gate.summary()}",
                      stacklevel=2)
    return path
