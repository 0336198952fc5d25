"""Frames on the device: pinned staging buffers, three CUDA streams and their events.

The video pipeline moves only code values across the bus: uint8/uint16 luma planes go up,
uint8/uint16 Cb/Cr planes come down, and everything between (normalising, resizing, the
network, chroma, stabiliser, gamut, quantisation) runs where the network runs. On CUDA a
batch is uploaded on one stream, computed on a second and downloaded on a third, joined
by events, so the upload of batch k+1, the compute of batch k and the download of batch
k-1 overlap and the host never waits for the GPU except where it reads a result
(``Pending.wait``). On the CPU every step is immediate and no copy is made.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch

# Pinned upload buffers in the ring: one being filled, one in flight, one spare.
UPLOAD_SLOTS = 3


class _Slot:
    def __init__(self, shape: tuple[int, ...], dtype: torch.dtype) -> None:
        self.host = torch.empty(shape, dtype=dtype, pin_memory=True)
        # Not recorded yet, so waiting on it returns at once: a new slot is free. (Recording
        # it here would tie it to the current device, not the pipeline's.)
        self.done = torch.cuda.Event()


class Pending:
    """A downloaded result; ``wait`` blocks until its copy has landed (no-op on CPU)."""

    def __init__(self, host: torch.Tensor, event: torch.cuda.Event | None = None) -> None:
        self._host, self._event = host, event

    def wait(self) -> torch.Tensor:
        event = self._event  # read once: the encoder and the infer thread may both wait
        if event is not None:
            event.synchronize()
        return self._host


class DeviceFlow:
    """Upload -> compute -> download for one pipeline on ``device``."""

    def __init__(self, device: str | torch.device) -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self._ring: list[_Slot] = []
        self._next = 0
        if self.cuda:
            self.up, self.work, self.down = (torch.cuda.Stream(self.device) for _ in range(3))

    def upload(self, planes: Sequence[np.ndarray]) -> torch.Tensor:
        """Stack equally sized 2-D host arrays into one ``N x H x W`` tensor on the device,
        ready for work issued under ``compute()``."""
        if not self.cuda:
            return torch.from_numpy(np.stack(planes))
        n, shape = len(planes), (len(planes), *planes[0].shape)
        slot = self._slot(shape, torch.from_numpy(planes[0][:1, :1]).dtype)
        slot.done.synchronize()  # the copy that last read this buffer has finished
        np.stack(planes, out=slot.host[:n].numpy())
        with torch.cuda.stream(self.up):
            dev = torch.empty(shape, dtype=slot.host.dtype, device=self.device)
            dev.copy_(slot.host[:n], non_blocking=True)
            slot.done.record(self.up)
        self.work.wait_event(slot.done)
        dev.record_stream(self.work)  # allocated on the upload stream, consumed on the compute one
        return dev

    def _slot(self, shape: tuple[int, ...], dtype: torch.dtype) -> _Slot:
        if not self._ring or self._ring[0].host.shape[1:] != shape[1:] or self._ring[0].host.dtype != dtype \
                or self._ring[0].host.shape[0] < shape[0]:
            torch.cuda.synchronize(self.device)  # old slots may still be read by a copy
            self._ring = [_Slot(shape, dtype) for _ in range(UPLOAD_SLOTS)]
        slot = self._ring[self._next % len(self._ring)]
        self._next += 1
        return slot

    @contextlib.contextmanager
    def compute(self) -> Iterator[None]:
        """Work issued inside runs on the compute stream (CUDA) or directly (CPU)."""
        if not self.cuda:
            yield
            return
        with torch.cuda.stream(self.work):
            yield

    def download(self, t: torch.Tensor) -> Pending:
        """Copy ``t`` (computed under ``compute()``) to the host without blocking."""
        if not self.cuda:
            return Pending(t)
        ready = torch.cuda.Event()
        ready.record(self.work)
        with torch.cuda.stream(self.down):
            self.down.wait_event(ready)
            host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            host.copy_(t, non_blocking=True)
            t.record_stream(self.down)  # its memory is not reused before the copy has read it
            done = torch.cuda.Event()
            done.record(self.down)
        return Pending(host, done)

    def synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
