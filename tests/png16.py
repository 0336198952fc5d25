"""A 16-bit PNG decoder for tests (Pillow reads 16-bit RGB PNGs as 8-bit)."""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np


def read_png16(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode a non-interlaced 16-bit RGB(A) PNG into ``H x W x C`` uint16 (for tests and
    verification: Pillow reads such files as 8-bit)."""
    data = Path(path).read_bytes()
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if tag == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat += body
        pos += 12 + n
    assert hdr is not None and hdr[2] == 16
    w, h, c = hdr[0], hdr[1], {0: 1, 2: 3, 4: 2, 6: 4}[hdr[3]]
    raw = zlib.decompress(idat)
    stride = w * c * 2
    bpp = c * 2
    out = bytearray()
    prev = bytearray(stride)
    for y in range(h):
        ft = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            cc = prev[i - bpp] if i >= bpp else 0
            if ft == 1:
                line[i] = (line[i] + a) & 255
            elif ft == 2:
                line[i] = (line[i] + b) & 255
            elif ft == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ft == 4:
                p = a + b - cc
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else cc)) & 255
        out += line
        prev = line
    return np.frombuffer(bytes(out), dtype=">u2").reshape(h, w, c).astype(np.uint16)
