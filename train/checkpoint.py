"""Resumable checkpoints: plain tensors, dicts, lists and numbers only, so they load with
``torch.load(weights_only=True)`` (no pickled code, ever), written atomically."""
from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scgan_rt.atomic import atomic_path
from scgan_rt.errors import ModelError, ResourceError

VERSION = 1


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
        "python_gauss": random.getstate()[2],
        "numpy_key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
        "numpy_pos": int(np_state["state"]["pos"]),
        "numpy_has_gauss": int(np_state["has_gauss"]),
        "numpy_gauss": float(np_state["gauss"]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": state["numpy_key"].numpy().astype(np.uint32), "pos": state["numpy_pos"]},
                         "has_gauss": state["numpy_has_gauss"], "gauss": state["numpy_gauss"]})
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    payload = {"version": VERSION, **payload, "rng": rng_state()}
    with atomic_path(path) as tmp:
        try:
            torch.save(payload, tmp)
        except (RuntimeError, OSError) as e:
            # torch's zip writer reports a short write (full disk, file size limit) as a
            # RuntimeError ("unexpected pos ..."), not as the OSError it was.
            free = shutil.disk_usage(tmp.parent).free
            raise ResourceError(f"disk full writing {path} (or a file size limit; {free / 2**20:.0f} MiB free "
                                f"on its disk)") from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(f"nothing to resume: {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(f"cannot resume from {path.name}: {str(e).splitlines()[0][:200]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("version") != VERSION:
        raise ModelError(f"{path.name} is not an scgan-rt training checkpoint (version {VERSION})")
    return ckpt
