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


def _worker(rank: int, world: int, port: int, photos, out, results, extra=None) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from scgan_rt.train import stages

    seen = []
    init = stages.ColorizationStage.__init__

    def keep(self, *a, **k):  # the stage object is internal to train(); keep it to read its weights after
        init(self, *a, **k)
        seen.append(self)

    stages.ColorizationStage.__init__ = keep
    r = train(tiny_train(max_steps=2, batch_size=1, **(extra or {})), tiny_model(), photos, out, quiet=True)
    st = seen[-1]
    weights = {name: [p.detach().clone() for p in m.parameters()] for name, m in st.modules.items()}
    results[rank] = (r["steps"], r["checkpoints_written"], weights)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_run_checkpoints_once(tmp_path):
    photos = photo_dir(tmp_path / "p")
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(2, _free_port(), photos, tmp_path / "run", results), nprocs=2, join=True)
    assert results[0][:2] == (2, 1)  # rank 0: 2 steps, exactly one checkpoint (the final one)
    assert results[1][:2] == (2, 0)  # other ranks never write
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ck["step"] == 2 and (tmp_path / "run" / "generator.safetensors").is_file()


def test_two_process_run_keeps_every_trained_module_identical_across_ranks(tmp_path):
    """Each rank sees other photos; only averaged gradients keep the ranks' weights equal,
    the training-only ab-class head included."""
    photos = photo_dir(tmp_path / "p")
    results = mp.Manager().dict()
    extra = dict(lambda_ab_class=0.05)
    mp.spawn(_worker, args=(2, _free_port(), photos, tmp_path / "run", results, extra), nprocs=2, join=True)
    w0, w1 = results[0][2], results[1][2]
    assert "ab_head" in w0
    for name in w0:
        for a, b in zip(w0[name], w1[name]):
            assert torch.allclose(a, b, atol=1e-6), name
