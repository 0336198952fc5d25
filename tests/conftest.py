"""Shared fixtures: a tiny seeded generator, the bundled real photos, a CLI runner."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

import scgan_rt
from scgan_rt.config import ModelConfig

torch.set_num_threads(min(2, os.cpu_count() or 1))

SAMPLES = Path(scgan_rt.__file__).parent / "samples"
PHOTOS = SAMPLES / "photos"
TINY = ModelConfig(preset="tiny", width=1 / 16, d_channels=8)


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    return PHOTOS


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded, tiny-width generator with non-trivial BN statistics (a few train-mode
    forwards on real photos), so eval-mode outputs are not degenerate."""
    from PIL import Image
    import numpy as np

    from scgan_rt.model import build_generator
    from scgan_rt.weights import save_weights

    gen = build_generator(TINY, seed=0)
    gen.train()
    imgs = []
    for f in sorted(PHOTOS.glob("*.jpg"))[:4]:
        g = np.asarray(Image.open(f).convert("L").resize((256, 256)), dtype=np.float32) / 127.5 - 1
        imgs.append(torch.from_numpy(g)[None, None])
    with torch.no_grad():
        for _ in range(3):
            gen(torch.cat(imgs))
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(path, gen, provenance={"kind": "test"})
    return path


def outputs(folder: Path, pattern: str = "*") -> list[Path]:
    """Files under ``folder`` (recursive) except the run journal, which is not an output."""
    if not Path(folder).exists():
        return []
    return [p for p in Path(folder).rglob(pattern) if p.is_file() and not p.name.startswith("journal")]


def default_sigint() -> None:
    """``preexec_fn`` for CLI children the tests interrupt: a SIGINT the test runner itself
    ignores (a background CI job) would be inherited as ignored, and the CLI honours that."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()


def make_png_bomb(path: Path) -> Path:
    """A valid 1x1 PNG whose header claims 100000 x 100000 pixels (10 GP)."""
    import struct
    import zlib

    from PIL import Image

    Image.new("L", (1, 1)).save(path)
    raw = bytearray(path.read_bytes())
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    raw[16:29] = ihdr
    raw[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    path.write_bytes(bytes(raw))
    return path


def realistic_weights(path: Path, photos: "np.ndarray", cfg: ModelConfig, seed: int = 0) -> Path:
    """Random-init BN running stats are mean 0 / var 1, which makes every activation decay
    towards 0 and any FP16 comparison trivially pass. Give BN real statistics by running
    the photos through in train mode (cumulative average), like a trained model has."""
    import numpy as np

    from scgan_rt.model import build_generator
    from scgan_rt.weights import save_weights

    g = build_generator(cfg, seed=seed)
    if g.prior is not None:  # the ImageNet prior, as training starts from it
        from scgan_rt.backbone import load_pretrained

        load_pretrained(g.prior)
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    g.train()
    with torch.no_grad():
        g(torch.from_numpy(photos))
        g(torch.from_numpy(np.flip(photos, -1).copy()))
    g.eval()
    return save_weights(path, g, {"summary": "test: random init, BN calibrated on photos"})


@pytest.fixture(scope="session")
def make_realistic_weights():
    """``realistic_weights`` for test folders that cannot import conftest (tests/gpu)."""
    return realistic_weights
