import json
import os
import pickle

import pytest
import torch

from scgan_rt.config import ModelConfig
from scgan_rt.errors import ModelError
from scgan_rt.model import build_generator
from scgan_rt.weights import load_generator, read_weights, save_weights

from conftest import TINY


def test_round_trip_keeps_config_and_provenance(tmp_path):
    gen = build_generator(TINY, seed=3)
    p = save_weights(tmp_path / "g.safetensors", gen, provenance={"data": "x", "epochs": 2})
    g2, w = load_generator(p)
    assert w.config == TINY
    assert json.loads(w.metadata["provenance"]) == {"data": "x", "epochs": 2}
    for k, v in gen.state_dict().items():
        torch.testing.assert_close(g2.state_dict()[k], v)
    assert not g2.training
    assert not list(tmp_path.glob("*.partial*"))


def test_fp16_storage_loads_as_float32(tmp_path):
    gen = build_generator(TINY, seed=3)
    p = save_weights(tmp_path / "g16.safetensors", gen, fp16=True)
    g2, _ = load_generator(p)
    w = g2.down1[1].weight
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, gen.down1[1].weight, atol=1e-3, rtol=1e-3)
    assert os.path.getsize(p) < os.path.getsize(save_weights(tmp_path / "g32.safetensors", gen)) * 0.6


def test_wrong_architecture_is_reported(tmp_path):
    gen = build_generator(TINY, seed=0)
    p = save_weights(tmp_path / "g.safetensors", gen)
    # Same tensors, but metadata claiming another width -> shape mismatch.
    from safetensors.torch import load_file, save_file

    other = ModelConfig(preset="tiny", width=1 / 8, d_channels=8)
    meta = {"format": "scgan-rt-generator", "config": other.to_json(), "preset": "tiny"}
    save_file(load_file(str(p)), str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(ModelError, match="does not match its architecture.*wrong shape"):
        load_generator(tmp_path / "bad.safetensors")


class _Evil:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def test_pickle_disguised_as_weights_is_refused(tmp_path):
    sentinel = tmp_path / "pwned"
    bad = tmp_path / "evil.safetensors"
    torch.save({"generator": _Evil(str(sentinel)), "config": TINY.to_json()}, bad)
    with pytest.raises(ModelError, match="refusing to load"):
        read_weights(bad)
    assert not sentinel.exists()
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Evil(str(sentinel))))
    with pytest.raises(ModelError):
        read_weights(raw)
    assert not sentinel.exists()


def test_plain_torch_checkpoint_loads_with_weights_only(tmp_path):
    gen = build_generator(TINY, seed=0)
    p = tmp_path / "g.pt"
    torch.save({"generator": gen.state_dict(), "config": TINY.to_json()}, p)
    g2, w = load_generator(p)
    assert w.config == TINY


def test_truncated_and_foreign_files(tmp_path):
    gen = build_generator(TINY, seed=0)
    p = save_weights(tmp_path / "g.safetensors", gen)
    data = p.read_bytes()
    (tmp_path / "half.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="corrupt"):
        read_weights(tmp_path / "half.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        read_weights(tmp_path / "empty.safetensors")
    (tmp_path / "text.safetensors").write_text("hello")
    with pytest.raises(ModelError, match="not a weights file"):
        read_weights(tmp_path / "text.safetensors")
