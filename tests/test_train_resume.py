"""Exact resume and the 2-process gloo run."""
from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp

from scgan_rt.train.trainer import train

from train_helpers import photo_dir, tiny_model, tiny_train


def _weights(run):
    ck = torch.load(run / "last.pt", weights_only=True)
    return ck["modules"]["generator"], ck


def test_resume_after_interrupt_is_bit_identical(tmp_path):
    torch.set_num_threads(1)  # same thread count in both runs: deterministic CPU kernels
    photos = photo_dir(tmp_path / "p", names=("astronaut", "chelsea", "coffee"))
    cfg = dict(batch_size=1, epochs=2)  # 3 steps per epoch: the interruption lands mid-epoch
    train(tiny_train(max_steps=5, **cfg), tiny_model(), photos, tmp_path / "a", quiet=True)
    train(tiny_train(max_steps=2, **cfg), tiny_model(), photos, tmp_path / "b", saliency_dir=tmp_path / "a" / "saliency",
          quiet=True)
    _, mid = _weights(tmp_path / "b")
    assert (mid["step"], mid["epoch"], mid["batch_in_epoch"]) == (2, 0, 2)
    train(tiny_train(max_steps=5, **cfg), tiny_model(), photos, tmp_path / "b", saliency_dir=tmp_path / "a" / "saliency",
          resume=True, quiet=True)
    wa, ca = _weights(tmp_path / "a")
    wb, cb = _weights(tmp_path / "b")
    assert ca["step"] == cb["step"] == 5
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert ca["optimizers"]["g"]["state"][0]["exp_avg"].equal(cb["optimizers"]["g"]["state"][0]["exp_avg"])


def _worker(rank: int, world: int, port: int, photos, out, results) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    r = train(tiny_train(max_steps=2, batch_size=1), tiny_model(), photos, out, quiet=True)
    results[rank] = (r["steps"], r["checkpoints_written"])


def test_two_process_gloo_run_checkpoints_once(tmp_path):
    photos = photo_dir(tmp_path / "p")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(2, port, photos, tmp_path / "run", results), nprocs=2, join=True)
    assert results[0] == (2, 1)  # rank 0: 2 steps, exactly one checkpoint (the final one)
    assert results[1] == (2, 0)  # other ranks never write
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ck["step"] == 2 and (tmp_path / "run" / "generator.safetensors").is_file()
