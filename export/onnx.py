"""ONNX export of the SCGAN generator (FP32 and FP16), safe ONNX loading, parity helpers.

The exported graph is what ONNX Runtime runs and what TensorRT builds:

* spectral norm and BatchNorm are folded into the convolutions first (``fold_for_inference``);
* input ``gray`` float32 ``N x 1 x S x S`` in [-1, 1]; outputs ``rgb`` float32 ``N x 3 x S x S``
  in [-1, 1] and, with ``with_saliency``, ``saliency`` float32 ``N x 1 x S x S`` in [0, 1];
* the batch axis is always symbolic (``N``); the spatial size is fixed at export time so
  ONNX Runtime and TensorRT can plan for it. A ``MIN:OPT:MAX`` batch is recorded in the
  metadata as the default TensorRT optimisation profile;
* self-describing: ``metadata_props`` carry the preset, the model config JSON, the source
  weights sha256, the scgan-rt version, size, precision and batch profile;
* single file (no external data), checked with ``onnx.checker`` (``full_check``), written
  atomically.

FP16 (for TensorRT 11, which only builds strongly typed networks): the FP32 graph is
converted to FP16 with float32 I/O kept; the final Tanh/Sigmoid (and any normalisation or
reduction op, should one appear) stay in FP32.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from scgan_rt.version import __version__

from .engine import DEFAULT_PROFILE
from scgan_rt.atomic import atomic_path
from scgan_rt.config import check_size
from scgan_rt.errors import ModelError, ScganError, UsageError
from scgan_rt.images import SAMPLES_DIR

OPSET = 17
INPUT_NAME = "gray"
OUTPUT_RGB = "rgb"
OUTPUT_SALIENCY = "saliency"
META_PREFIX = "scgan_rt."
FP16_MAX = 65504.0
# Kept in FP32 inside an FP16 graph: normalisation, reductions and the final activations
# (exp/saturation in FP16 loses the tails the colour merge needs).
FP16_OP_BLOCK_LIST = [
    "Tanh", "Sigmoid", "Softmax", "LogSoftmax", "Exp", "Log", "Pow", "Sqrt", "Reciprocal", "Div",
    "BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp", "ReduceProd",
    "Resize",  # nearest x2: exact either way; kept FP32 so its float scales input stays valid
]


@dataclass(frozen=True)
class BatchSpec:
    """``dynamic`` or a TensorRT-style ``MIN:OPT:MAX`` profile."""

    min: int | None = None
    opt: int | None = None
    max: int | None = None

    @property
    def dynamic(self) -> bool:
        return self.min is None

    def __str__(self) -> str:
        return "dynamic" if self.dynamic else f"{self.min}:{self.opt}:{self.max}"

    def profile(self, default: tuple[int, int, int] = DEFAULT_PROFILE) -> tuple[int, int, int]:
        return default if self.dynamic else (self.min, self.opt, self.max)  # type: ignore[return-value]


def parse_batch(spec: str | BatchSpec | Sequence[int] | None) -> BatchSpec:
    """``'dynamic'`` / None, ``'N'`` (= N:N:N) or ``'MIN:OPT:MAX'`` with 1 <= MIN <= OPT <= MAX."""
    if isinstance(spec, BatchSpec):
        return spec
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "dynamic")):
        return BatchSpec()
    if isinstance(spec, str):
        parts = spec.strip().split(":")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise UsageError(f"--batch must be 'dynamic', N or MIN:OPT:MAX, got {spec!r}") from None
    else:
        nums = [int(n) for n in spec]
    if len(nums) == 1:
        nums = nums * 3
    if len(nums) != 3 or not (1 <= nums[0] <= nums[1] <= nums[2]):
        raise UsageError(f"--batch must be MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX, got {spec!r}")
    return BatchSpec(*nums)


@dataclass
class ExportResult:
    path: Path
    sha256: str
    precision: str
    size: int
    batch: str
    outputs: list[str]
    metadata: dict[str, str] = field(default_factory=dict)
    max_activation: float | None = None
    max_activation_layer: str | None = None


# --------------------------------------------------------------------------- export


def _folded_inference_model(weights: str | os.PathLike[str] | Any, with_saliency: bool):
    """(InferenceGenerator with SN/BN folded, LoadedWeights-like info)."""
    from scgan_rt.model import InferenceGenerator, fold_for_inference
    from scgan_rt.weights import load_generator

    gen, w = load_generator(weights, "cpu")
    if with_saliency and gen.saliency is None:
        raise UsageError(f"{w.path.name} has no saliency branch (use_saliency=False); drop --with-saliency")
    model = InferenceGenerator(fold_for_inference(gen), with_saliency).eval()
    return model, w


def _torch_to_onnx(model, size: int, with_saliency: bool, in_channels: int, path: Path) -> None:
    import torch

    outputs = [OUTPUT_RGB] + ([OUTPUT_SALIENCY] if with_saliency else [])
    dyn = {INPUT_NAME: {0: "N"}, **{o: {0: "N"} for o in outputs}}
    x = torch.zeros(1, in_channels, size, size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # The TorchScript exporter: deterministic, single-file, and handles ReflectionPad /
        # nearest Upsample with static spatial shapes cleanly.
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=OPSET, input_names=[INPUT_NAME],
                          output_names=outputs, dynamic_axes=dyn, do_constant_folding=True)


def set_metadata(model, meta: dict[str, Any]) -> None:
    existing = {p.key: p for p in model.metadata_props}
    for k, v in meta.items():
        key = META_PREFIX + k
        val = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
        if key in existing:
            existing[key].value = val
        else:
            p = model.metadata_props.add()
            p.key, p.value = key, val


def get_metadata(model) -> dict[str, str]:
    return {p.key[len(META_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(META_PREFIX)}


def _save_checked(model, out: Path) -> str:
    """onnx.checker (full_check) then an atomic single-file write; returns the sha256."""
    import onnx

    from scgan_rt.weights import sha256_file

    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:  # a bug in the exporter, not user input
        raise ModelError(f"exported ONNX failed onnx.checker: {str(e).splitlines()[0]}") from None
    if model.ByteSize() >= 2**31 - 1:
        raise ModelError("model is over 2 GiB; single-file ONNX cannot hold it")
    with atomic_path(out) as tmp:
        onnx.save_model(model, str(tmp), save_as_external_data=False)
    return sha256_file(out)


def export_onnx(weights: str | os.PathLike[str], out: str | os.PathLike[str], size: int = 256,
                batch: str | BatchSpec | None = "dynamic", fp16: bool = False, with_saliency: bool = False,
                activation_images: np.ndarray | None = None) -> ExportResult:
    """Export generator weights to a single-file ONNX model (FP32, or FP16 with FP32 I/O).

    ``activation_images`` (gray ``N x 1 x S x S`` in [-1, 1]): when given, the largest
    per-layer activation of the FP32 model on them is measured and returned (and stored
    in the metadata as ``max_activation``).
    """
    import tempfile

    import onnx

    size = check_size(size)
    spec = parse_batch(batch)
    out = Path(out)
    model, w = _folded_inference_model(weights, with_saliency)
    cfg = w.config
    max_act = None
    if activation_images is not None:
        acts = max_activation_per_layer(model, activation_images)
        max_act = max(acts.items(), key=lambda kv: kv[1])
    with tempfile.TemporaryDirectory(prefix="scgan-export-") as td:
        tmp = Path(td) / "fp32.onnx"
        _torch_to_onnx(model, size, with_saliency, cfg.in_channels, tmp)
        proto = onnx.load_model(str(tmp), load_external_data=False)
    proto = simplify(proto)
    if fp16:
        proto = convert_to_fp16(proto)
    outputs = [o.name for o in proto.graph.output]
    meta = {
        "format": "scgan-rt-onnx",
        "preset": cfg.preset,
        "config": cfg.to_json(),
        "weights_sha256": w.sha256,
        "version": __version__,
        "size": str(size),
        "precision": "fp16" if fp16 else "fp32",
        "batch": str(spec),
        "inputs": INPUT_NAME,
        "outputs": ",".join(outputs),
    }
    if max_act is not None:
        meta["max_activation"] = f"{max_act[1]:.6g}"
    set_metadata(proto, meta)
    proto.producer_name, proto.producer_version = "scgan-rt", __version__
    proto.doc_string = f"SCGAN generator ({cfg.preset}), gray -> rgb in [-1, 1]"
    sha = _save_checked(proto, out)
    return ExportResult(out, sha, meta["precision"], size, str(spec), outputs, meta,
                        max_act[1] if max_act else None, max_act[0] if max_act else None)


def simplify(model):
    """Constant-fold the reflection-pad index arithmetic the TorchScript exporter leaves
    behind (onnxscript's optimizer); the graph becomes Pad/Conv/LeakyRelu/Resize/Concat."""
    try:
        from onnxscript import optimizer
    except ImportError:  # optional: ORT/TensorRT fold these themselves
        return model
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optimizer.optimize(model)
    except Exception:  # never fail an export over a cosmetic pass
        return model


# --------------------------------------------------------------------------- FP16


def convert_to_fp16(model, op_block_list: Iterable[str] | None = None):
    """FP32 ``ModelProto`` -> FP16 graph with float32 inputs/outputs (Cast at the edges).

    Ops in ``op_block_list`` (default ``FP16_OP_BLOCK_LIST``) stay FP32 with Casts around
    them, so the strongly typed TensorRT 11 build runs them in FP32.
    """
    from onnxconverter_common import float16

    blocked = list(FP16_OP_BLOCK_LIST if op_block_list is None else op_block_list)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "values truncated to fp16 range" for tiny weights
        m16 = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked,
                                               disable_shape_infer=False)
    _force_float_outputs(m16)
    return m16


def _force_float_outputs(model) -> None:
    """onnxconverter-common leaves a graph output FP16 when it is produced by a blocked op
    (it casts the FP32 result down again). Make every graph output float32."""
    import onnx
    from onnx import helper

    F32, F16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    producers = {o: n for n in model.graph.node for o in n.output}
    for out in model.graph.output:
        tt = out.type.tensor_type
        if tt.elem_type != F16:
            continue
        node = producers.get(out.name)
        if node is not None and node.op_type == "Cast":
            for a in node.attribute:
                if a.name == "to":
                    a.i = F32
        else:
            inner = out.name + "_fp16"
            if node is not None:
                node.output[list(node.output).index(out.name)] = inner
            model.graph.node.append(helper.make_node("Cast", [inner], [out.name], to=F32, name=out.name + "_to_fp32"))
        tt.elem_type = F32


def max_activation_per_layer(model, images: np.ndarray) -> dict[str, float]:
    """Largest |activation| of every leaf module of the (folded, FP32) model on ``images``.

    FP16 overflows at 65504; the exported FP16 graph is only safe when these stay far below.
    """
    import torch

    acts: dict[str, float] = {}
    hooks = []
    for name, m in model.named_modules():
        if len(list(m.children())) == 0:
            def hook(mod, inp, outp, name=name):  # noqa: ANN001
                t = outp[0] if isinstance(outp, tuple) else outp
                if isinstance(t, torch.Tensor):
                    acts[name] = max(acts.get(name, 0.0), float(t.detach().abs().max()))
            hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            for i in range(len(images)):
                model(torch.from_numpy(np.ascontiguousarray(images[i:i + 1], dtype=np.float32)))
    finally:
        for h in hooks:
            h.remove()
    return acts


def sample_gray_images(size: int = 256, limit: int = 4) -> np.ndarray:
    """Real photos as gray ``N x 1 x S x S`` in [-1, 1]: the package samples if shipped,
    else scikit-image's sample photos if installed; empty array when neither exists."""
    from PIL import Image

    imgs: list[np.ndarray] = []
    sdir = SAMPLES_DIR
    if sdir.is_dir():
        for p in sorted(sdir.rglob("*")):
            if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"):
                try:
                    with Image.open(p) as im:
                        imgs.append(np.asarray(im.convert("RGB")))
                except Exception:
                    continue
            if len(imgs) >= limit:
                break
    if not imgs:
        try:
            from skimage import data
            imgs = [getattr(data, n)() for n in ("astronaut", "coffee", "chelsea", "rocket")[:limit]]
        except Exception:
            return np.zeros((0, 1, size, size), np.float32)
    out = []
    for a in imgs:
        im = Image.fromarray(a if a.ndim == 3 else np.stack([a] * 3, -1)).convert("L")
        im = im.resize((size, size), Image.BICUBIC)
        out.append(np.asarray(im, np.float32)[None] / 127.5 - 1.0)
    return np.stack(out).astype(np.float32)


# --------------------------------------------------------------------------- loading


def check_external_data(model, model_path: str | os.PathLike[str]) -> None:
    """Refuse external-data locations that are absolute or escape the model's folder."""
    from onnx.external_data_helper import _get_all_tensors

    base = Path(model_path).resolve().parent
    for t in _get_all_tensors(model):
        if t.data_location != 1:  # onnx.TensorProto.EXTERNAL
            continue
        loc = next((e.value for e in t.external_data if e.key == "location"), "")
        p = Path(loc)
        bad = (not loc or p.is_absolute() or loc.startswith(("/", "\\")) or ":" in p.parts[0]
               or ".." in Path(loc.replace("\\", "/")).parts)
        if not bad:
            try:
                (base / p).resolve().relative_to(base)
            except ValueError:
                bad = True
        if bad:
            raise ModelError(f"refusing {Path(model_path).name}: tensor {t.name!r} has external data at {loc!r}, "
                             "outside the model's folder")


def load_onnx(path: str | os.PathLike[str], load_external: bool = True):
    """Load an ONNX model, refusing external-data paths that escape its folder."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"no such ONNX file: {p}")
    try:
        model = onnx.load_model(str(p), load_external_data=False)
    except Exception as e:
        raise ModelError(f"{p.name} is not a valid ONNX file: {str(e).splitlines()[0][:200]}") from None
    check_external_data(model, p)
    if load_external:
        from onnx.external_data_helper import load_external_data_for_model
        try:
            load_external_data_for_model(model, str(p.resolve().parent))
        except Exception as e:
            raise ModelError(f"{p.name}: cannot read its external data: {e}") from None
    return model


def cache_dir(kind: str = "") -> Path:
    """``$SCGAN_RT_CACHE`` or ``~/.cache/scgan-rt`` (+ ``kind``): exported ONNX per weights."""
    base = os.environ.get("SCGAN_RT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "scgan-rt")
    return Path(base) / kind if kind else Path(base)


def cached_onnx(weights: str | os.PathLike[str], size: int = 256, with_saliency: bool = False, fp16: bool = False,
                sha256: str | None = None) -> Path:
    """The ONNX export of ``weights`` at ``size``, exported once into the cache (atomically)
    and reused while its recorded weights sha256 matches."""
    from scgan_rt.weights import sha256_file

    sha = sha256 or sha256_file(weights)
    name = f"{sha[:20]}-{size}-{'rgb+sal' if with_saliency else 'rgb'}-{'fp16' if fp16 else 'fp32'}.onnx"
    path = cache_dir("onnx") / name
    if path.is_file():
        try:
            meta = onnx_info(path)
            if meta.get("weights_sha256") == sha and meta.get("size") == str(size):
                return path
        except ScganError:
            pass  # corrupt / stale cache entry: re-export over it
    export_onnx(weights, path, size=size, fp16=fp16, with_saliency=with_saliency)
    return path


def colorizer_onnx_info(path: str | os.PathLike[str]) -> dict[str, str]:
    """``onnx_info`` of an ONNX file that is a colorization model (a ``gray`` input and an
    ``rgb`` output); any other graph is a ``ModelError`` naming what it lacks."""
    model = load_onnx(path, load_external=False)
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    lacks = [f"{kind} '{name}'" for kind, name, names in (("input", "gray", inputs), ("output", "rgb", outputs))
             if name not in names]
    if lacks:
        raise ModelError(f"{Path(path).name} is not an scgan-rt colorization model: it lacks the {' and the '.join(lacks)} "
                         f"(it has inputs {', '.join(inputs) or 'none'}; outputs {', '.join(outputs) or 'none'})")
    return get_metadata(model)


def onnx_info(path: str | os.PathLike[str]) -> dict[str, str]:
    """The scgan-rt metadata of an ONNX file (after the external-data check)."""
    return get_metadata(load_onnx(path, load_external=False))
