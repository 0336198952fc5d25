"""Parity helpers shared by the ONNX/TensorRT tests and scripts/trt_parity.py (test-only)."""
from __future__ import annotations

import os

import numpy as np

from scgan_rt.export.onnx import INPUT_NAME, OUTPUT_RGB, OUTPUT_SALIENCY, load_onnx
from scgan_rt.metrics import psnr as _psnr


def ort_session(path: str | os.PathLike[str], threads: int | None = None):
    import onnxruntime as ort

    load_onnx(path, load_external=False)  # external-data guard before ORT touches it
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def torch_reference(weights: str | os.PathLike[str], gray: np.ndarray, with_saliency: bool = False):
    """PyTorch eval-mode output (unfolded model) for ``gray``: rgb (and saliency)."""
    import torch

    from scgan_rt.weights import load_generator

    gen, _ = load_generator(weights, "cpu")
    with torch.no_grad():
        rgb, sal = gen(torch.from_numpy(np.ascontiguousarray(gray, dtype=np.float32)), with_saliency=with_saliency)
    return rgb.numpy(), (sal.numpy() if sal is not None else None)


def parity(weights: str | os.PathLike[str], onnx_path: str | os.PathLike[str], gray: np.ndarray) -> dict[str, float]:
    """Max abs error of ONNX Runtime (CPU) vs PyTorch eval, per output."""
    sess = ort_session(onnx_path)
    outs = sess.run(None, {INPUT_NAME: np.ascontiguousarray(gray, dtype=np.float32)})
    names = [o.name for o in sess.get_outputs()]
    ref_rgb, ref_sal = torch_reference(weights, gray, OUTPUT_SALIENCY in names)
    res = {OUTPUT_RGB: float(np.abs(outs[names.index(OUTPUT_RGB)] - ref_rgb).max())}
    if OUTPUT_SALIENCY in names and ref_sal is not None:
        res[OUTPUT_SALIENCY] = float(np.abs(outs[names.index(OUTPUT_SALIENCY)] - ref_sal).max())
    return res


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 2.0) -> float:
    """PSNR in dB; default peak 2 for [-1, 1] tensors (same as [0, 1] images after x/2+.5)."""
    return _psnr(np.asarray(a), np.asarray(b), data_range=peak)
