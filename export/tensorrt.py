"""Build a TensorRT engine from an exported ONNX model (TensorRT 10 and 11).

* TensorRT 11 builds only strongly typed networks: the network is created with
  ``1 << NetworkDefinitionCreationFlag.STRONGLY_TYPED`` and precision comes from the graph.
  Asking for ``--fp16`` with an FP32 ONNX converts the graph to FP16 first (float I/O,
  fragile ops kept FP32; see ``export.onnx.convert_to_fp16``). No precision builder flag.
* TensorRT 10: explicit batch is implicit (creation flags 0); ``--fp16`` sets
  ``BuilderFlag.FP16`` on the FP32 graph. An FP16 graph is built strongly typed.
* INT8 (``--int8``): explicit quantization of a QDQ ONNX from ``export --int8``. TensorRT 11
  (strongly typed) takes the Q/DQ graph as is, with no precision flag; TensorRT 10 builds it
  weakly typed with ``BuilderFlag.INT8`` set, as explicit quantization needs there, and
  ``BuilderFlag.FP16``, so the layers the QDQ graph keeps in float may run FP16; TensorRT 11
  runs them as the graph types them (FP32). The header records it (``float_layers``).
* One optimisation profile ``MIN:OPT:MAX`` on the batch axis of ``gray``; workspace pool
  limit; optional timing cache (read and written back atomically); progress through
  ``IProgressMonitor`` when the TensorRT build has it, else a spinner.
* The engine file = JSON header + serialized engine (``export.engine``),
  written atomically and named by the cache key (ONNX hash, GPU, TensorRT version,
  precision, profile, size).
"""
from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from scgan_rt.version import __version__
from scgan_rt.atomic import atomic_path
from scgan_rt.errors import ModelError, UsageError
from .engine import (DEFAULT_WORKSPACE_GIB, engine_cache_name, engine_dir, gpu_identity, import_tensorrt,
                     trt_major, write_engine_file)
from .onnx import INPUT_NAME, check_size, convert_to_fp16, get_metadata, load_onnx, parse_batch


def _progress_monitor(trt: Any, stream=sys.stderr):
    """An ``IProgressMonitor`` that prints phase progress, or None when unavailable."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    class Monitor(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self._lock = threading.Lock()
            self._steps: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            with self._lock:
                self._steps[phase_name] = num_steps
                depth = 1 if parent_phase else 0
                print(f"{'  ' * depth}[build] {phase_name} (0/{num_steps})", file=stream, flush=True)

        def step_complete(self, phase_name: str, step: int) -> bool:
            with self._lock:
                total = self._steps.get(phase_name, 0)
                if total > 1:
                    print(f"\r  [build] {phase_name} {step + 1}/{total}", end="", file=stream, flush=True)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            with self._lock:
                self._steps.pop(phase_name, None)
                print(f"\r  [build] {phase_name} done", file=stream, flush=True)

    return Monitor()


class _Spinner:
    def __init__(self, text: str, stream=sys.stderr) -> None:
        self.text, self.stream = text, stream
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0, i = time.monotonic(), 0
        while not self._stop.wait(0.5):
            ch = "|/-\\"[i % 4]
            print(f"\r{ch} {self.text} {time.monotonic() - t0:.0f}s", end="", file=self.stream, flush=True)
            i += 1

    def __enter__(self) -> "_Spinner":
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()
        print("", file=self.stream, flush=True)


def _parse(trt: Any, network: Any, logger: Any, onnx_bytes: bytes, name: str) -> Any:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ModelError(f"TensorRT cannot parse {name}: {errs[0] if errs else 'unknown error'}")
    return parser


def build_engine(onnx: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = "engines",
                 fp16: bool = False, batch: Any = None, size: int | None = None, workspace_gib: float = DEFAULT_WORKSPACE_GIB,
                 timing_cache: str | os.PathLike[str] | None = None, *, trt: Any | None = None,
                 gpu: tuple[str, str] | None = None, device_id: int = 0, quiet: bool = False,
                 int8: bool = False) -> Path:
    """Build (or reuse from the cache) the engine for ``onnx``; returns the engine path."""
    from scgan_rt.weights import sha256_file

    trt = trt or import_tensorrt()
    onnx = Path(onnx)
    model = load_onnx(onnx)  # refuses escaping external data; we build from bytes, so no paths leak
    meta = get_metadata(model)
    graph_size = int(meta.get("size", size or 256))
    size = check_size(size or graph_size)
    if size != graph_size:
        raise UsageError(f"{onnx.name} was exported at --size {graph_size}; re-export with --size {size}")
    spec = parse_batch(batch if batch is not None else meta.get("batch"))
    pmin, popt, pmax = spec.profile()
    graph_fp16 = meta.get("precision") == "fp16"
    graph_int8 = meta.get("precision") == "int8"
    if int8 and not graph_int8:
        raise UsageError(f"--int8 needs a QDQ model from `scgan-rt export --int8`; {onnx.name} is "
                         f"{meta.get('precision', 'fp32')}")
    major = trt_major(trt)
    version = str(trt.__version__)
    gpu_name, cc = gpu or gpu_identity(device_id)
    precision = "int8" if graph_int8 else "fp16" if (fp16 or graph_fp16) else "fp32"
    onnx_sha = sha256_file(onnx)
    out = engine_dir(out_dir) / engine_cache_name(onnx_sha, gpu_name, cc, version, precision, (pmin, popt, pmax), size)
    if out.is_file():
        return out
    if workspace_gib <= 0:
        raise UsageError(f"--workspace must be > 0 GiB, got {workspace_gib}")

    if major >= 11 and precision == "fp16" and not graph_fp16:
        # Strongly typed: FP16 must be in the graph itself.
        model = convert_to_fp16(model)
        graph_fp16 = True
    strongly_typed = major >= 11 or graph_fp16
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = _parse(trt, network, logger, model.SerializeToString(), onnx.name)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "int8" and not strongly_typed:
        config.set_flag(trt.BuilderFlag.INT8)  # TensorRT 10: explicit quantization needs it
        # The float part of the QDQ graph (the fine decoder: most of the FLOPs) may run FP16,
        # as it does in the FP16 engine; without the flag TensorRT 10 runs it FP32.
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "fp16" and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)  # TensorRT 10, FP32 graph
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (pmin, 1, size, size), (popt, 1, size, size), (pmax, 1, size, size))
    config.add_optimization_profile(profile)
    cache = None
    if timing_cache is not None:
        tc = Path(timing_cache)
        cache = config.create_timing_cache(tc.read_bytes() if tc.is_file() else b"")
        config.set_timing_cache(cache, False)
    monitor = None if quiet else _progress_monitor(trt)
    if monitor is not None:
        config.progress_monitor = monitor
    label = f"building TensorRT {version} {precision} engine for {gpu_name} (batch {pmin}:{popt}:{pmax}, {size}px)"
    if not quiet:
        print(label, file=sys.stderr, flush=True)
    if monitor is None and not quiet:
        with _Spinner("building"):
            serialized = builder.build_serialized_network(network, config)
    else:
        serialized = builder.build_serialized_network(network, config)
    del parser
    if serialized is None:
        raise ModelError(f"TensorRT failed to build an engine from {onnx.name} (see the log above)")
    if cache is not None and timing_cache is not None:
        with atomic_path(timing_cache) as tmp:
            tmp.write_bytes(bytes(memoryview(cache.serialize())))
    header = {
        "tensorrt_version": version,
        "gpu_name": gpu_name,
        "compute_capability": cc,
        "precision": precision,
        "strongly_typed": bool(strongly_typed),
        "profile": [pmin, popt, pmax],
        "size": size,
        "onnx_sha256": onnx_sha,
        "onnx_name": onnx.name,
        "weights_sha256": meta.get("weights_sha256"),
        "preset": meta.get("preset"),
        "outputs": meta.get("outputs", "rgb"),
        "scgan_rt_version": __version__,
    }
    if graph_int8:
        header.update(calibration_sha256=meta.get("calibration_sha256"), int8_float_nodes=meta.get("int8_float_nodes"),
                      float_layers="fp32" if strongly_typed else "fp16")
    return write_engine_file(out, header, bytes(memoryview(serialized)))
