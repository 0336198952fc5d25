"""Generator weights: safetensors with JSON metadata (config, preset, provenance).

Loading never unpickles arbitrary objects: safetensors files are plain tensors, and
legacy ``torch.save`` files are only read with ``weights_only=True`` (no fallback).
Architecture mismatches are reported as a short key/shape diff.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import pickle
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .version import __version__
from .atomic import atomic_path
from .config import PRESETS, ModelConfig
from .errors import ModelError, ScganError, UsageError
from .model import Generator, build_generator, count_parameters

FORMAT = "scgan-rt-generator"
WEIGHTS_DIR = Path(__file__).parent / "weights"
# Models shipped inside the package, by name. The first is the default; every older default
# stays reachable by its name (``--model scgan-prior-v1``), and a preset's name resolves to
# the first bundled file of that preset (``--model scgan-prior``, ``--model scgan-lite``).
BUNDLED = {"scgan-prior-v3": "scgan-prior-v3.safetensors", "scgan-prior-v2": "scgan-prior-v2.safetensors",
           "scgan-prior-v1": "scgan-prior-v1.safetensors", "scgan-lite-v1": "scgan-lite-v1.safetensors"}
DEFAULT_MODEL = next(iter(BUNDLED))
DEFAULT_WEIGHTS = WEIGHTS_DIR / BUNDLED[DEFAULT_MODEL]


@dataclass
class LoadedWeights:
    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any]
    path: Path
    sha256: str


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_weights() -> Path | None:
    """The model shipped inside the package, if this build has one."""
    return DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.is_file() else None


def bundled_models() -> dict[str, Path]:
    """Name -> file of every model this build ships (the default first)."""
    return {n: WEIGHTS_DIR / f for n, f in BUNDLED.items() if (WEIGHTS_DIR / f).is_file()}


def resolve_weights(model: str | os.PathLike[str] | None) -> Path:
    """``None`` or ``"default"``: the default model; a bundled model's name (``scgan-lite-v1``)
    or its preset's name (``scgan-lite``): that file; anything else: a weights/ONNX/engine path."""
    name = None if model is None else str(model)
    if name in (None, "default"):
        bundled = default_weights()
        if bundled is None:
            raise ModelError("no default model is bundled with this build; pass --model W.safetensors "
                             "(create one with `scgan-rt model init --preset scgan-lite -o W.safetensors`)")
        return bundled
    shipped = bundled_models()
    if name in shipped:
        return shipped[name]
    for path in shipped.values():
        if name == _bundled_preset(path):
            return path
    if name in PRESETS:
        raise ModelError(f"no {name} weights are bundled; pass a weights file (train one with `scgan-rt train`)")
    return check_model_file(Path(name))  # type: ignore[arg-type]


def check_model_file(p: Path) -> Path:
    """``p`` if it is a regular file we may read; a folder, FIFO or device is a one-line
    ``ModelError`` (and never opened), a missing file a ``UsageError``."""
    if not p.exists():
        raise UsageError(f"model not found: {p}")
    mode = p.stat().st_mode
    if stat.S_ISDIR(mode):
        raise ModelError(f"--model {p} is a folder; give a weights (.safetensors), ONNX or engine file")
    if not stat.S_ISREG(mode):
        raise ModelError(f"--model {p} is not a regular file; give a weights (.safetensors), ONNX or engine file")
    if not os.access(p, os.R_OK):
        raise ModelError(f"cannot read model file {p}: permission denied")
    return p


def _bundled_preset(path: Path) -> str:
    try:
        return read_weights(path).config.preset
    except ScganError:
        return ""


def save_weights(path: str | os.PathLike[str], gen: Generator, provenance: dict[str, Any] | None = None,
                 fp16: bool = False) -> Path:
    """Write the generator's state dict (spectral-norm parametrizations included, so
    training can resume from it) atomically as safetensors."""
    from safetensors.torch import save_file

    sd = {k: v.detach().cpu().contiguous() for k, v in gen.state_dict().items()}
    if fp16:
        # Storage only: weights are upcast to float32 on load. BN running stats and
        # integer counters are kept as they are.
        sd = {k: (v.half() if v.is_floating_point() and "running_" not in k else v) for k, v in sd.items()}
    meta = {
        "format": FORMAT,
        "preset": gen.cfg.preset,
        "config": gen.cfg.to_json(),
        "parameters": str(count_parameters(gen)),
        "scgan_rt_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "provenance": json.dumps(provenance or {}, sort_keys=True),
    }
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata=meta)
    return Path(path)


def _sniff(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] == b"\x80":
        return "pickle"
    return "unknown"


def read_weights(path: str | os.PathLike[str]) -> LoadedWeights:
    """Read a weights file without building a model. Raises ``ModelError`` on anything odd."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"weights not found: {p}")
    if not p.is_file() or not os.access(p, os.R_OK):
        raise ModelError(f"cannot read weights file: {p}")
    if p.stat().st_size == 0:
        raise ModelError(f"weights file is empty: {p}")
    kind = _sniff(p)
    if kind == "safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt") as f:
                meta = dict(f.metadata() or {})
                sd = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # SafetensorError, OSError: truncated or garbled
            raise ModelError(f"corrupt weights file {p.name}: {str(e).splitlines()[0]}") from None
        if meta.get("format") != FORMAT or "config" not in meta:
            raise ModelError(f"{p.name} is a safetensors file but not scgan-rt generator weights (no config metadata)")
        cfg = ModelConfig.from_json(meta["config"])
    elif kind in ("torch-zip", "pickle"):
        obj = _torch_load(p, "", "corrupt checkpoint")
        if not isinstance(obj, dict):
            raise ModelError(f"{p.name}: expected a dict checkpoint, got {type(obj).__name__}")
        sd = obj.get("generator") or obj.get("state_dict") or obj.get("model")
        cfg_raw = obj.get("config")
        if not isinstance(sd, dict) or cfg_raw is None:
            raise ModelError(f"{p.name}: checkpoint lacks 'generator' weights and an scgan-rt 'config'")
        cfg = ModelConfig.from_dict(cfg_raw) if isinstance(cfg_raw, dict) else ModelConfig.from_json(str(cfg_raw))
        meta = {"format": "torch", "preset": cfg.preset, "config": cfg.to_json()}
    else:
        raise ModelError(f"{p.name} is not a weights file: neither safetensors nor a torch checkpoint "
                         f"({_looks_like(p)})")
    meta.setdefault("provenance", "{}")
    return LoadedWeights(cfg, sd, meta, p, sha256_file(p))


def _looks_like(p: Path) -> str:
    """What the head of a file that is not weights looks like, for the error message."""
    with open(p, "rb") as f:
        head = f.read(256)
    text = head.decode("utf-8", "ignore")
    if b"\x00" not in head and len(text) >= len(head) * 0.9 and all(c.isprintable() or c.isspace() for c in text):
        return "it holds text"
    return "its first bytes are no known format"


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def _torch_load(p: Path, what: str, broken: str) -> Any:
    """``torch.load`` that never unpickles code, failing in one line."""
    try:
        # A file object, not a path: newer torch guesses formats from the extension.
        with open(p, "rb") as fh:
            return torch.load(fh, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelError(f"refusing to load {what}{p.name}: not a plain weights file (it contains pickled "
                         f"code)") from None
    except Exception as e:
        raise ModelError(f"{broken} {p.name}: {_first_line(e)}") from None


def read_state_dict(path: str | os.PathLike[str], what: str) -> dict[str, torch.Tensor]:
    """A plain tensor state dict from a .safetensors or torch file (never unpickling code);
    anything else is a one-line ``ModelError`` naming ``what`` and the file."""
    p = Path(path)
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            sd = load_file(str(p))
        except Exception as e:
            raise ModelError(f"cannot read {what} {p.name}: {_first_line(e)}") from None
    else:
        sd = _torch_load(p, f"{what} ", f"cannot read {what}")
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelError(f"{what} {p.name} is not a state dict of tensors")
    return sd


def load_generator(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> tuple[Generator, LoadedWeights]:
    """Build the generator described by the file and load its weights strictly, in eval mode."""
    w = read_weights(path)
    gen = build_generator(w.config)
    load_state_strict(gen, w.state_dict, w.path.name)
    return gen.to(device).eval(), w


def load_state_strict(module: torch.nn.Module, sd: dict[str, torch.Tensor], name: str) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [k for k in own if k in sd and tuple(own[k].shape) != tuple(sd[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise ModelError(f"{name} does not match its architecture: " + "; ".join(parts))
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)


def describe(w: LoadedWeights) -> dict[str, Any]:
    try:
        prov = json.loads(w.metadata.get("provenance", "{}"))
    except json.JSONDecodeError:
        prov = {"raw": w.metadata.get("provenance")}
    return {
        "path": str(w.path),
        "sha256": w.sha256,
        "preset": w.config.preset,
        "config": json.loads(w.config.to_json()),
        "scgan_rt_version": w.metadata.get("scgan_rt_version"),
        "created": w.metadata.get("created"),
        "provenance": prov,
    }
