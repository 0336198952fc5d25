"""Archives at scale: the journal (resume, retries, changed inputs, crashes), shards that
partition an archive, `status`, and the same job on a local Ray instance."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import PHOTOS, sha
from scgan_rt.cli import app
from scgan_rt.errors import EXIT_PARTIAL, EXIT_USAGE


def _archive(root: Path, n: int = 10, size: int = 96) -> Path:
    """``n`` distinct small photos in nested folders (real photos, shifted crops)."""
    root.mkdir(parents=True)
    photos = sorted(PHOTOS.glob("*.jpg"))
    for i in range(n):
        im = Image.open(photos[i % len(photos)]).convert("RGB")
        w, h = im.size
        crop = im.crop((i * 7, i * 5, i * 7 + min(w, h) // 2, i * 5 + min(w, h) // 2)).resize((size, size))
        (root / f"roll{i % 3}").mkdir(exist_ok=True)
        crop.save(root / f"roll{i % 3}" / f"scan{i:02d}.jpg", quality=92)
    return root


def _run(runner, *args):
    r = runner.invoke(app, ["colorize", *map(str, args), "--json"])
    rep = json.loads(r.stdout[r.stdout.index("{"):]) if "{" in r.stdout else None
    return r, rep


def _items(out: Path) -> list[dict]:
    lines = []
    for j in sorted(out.glob("journal*.jsonl")):
        lines += [json.loads(x) for x in j.read_text().splitlines() if x.strip().startswith("{") and x.strip().endswith("}")]
    return [x for x in lines if x["kind"] == "item"]


def test_journal_resume_retry_changed_inputs_and_settings(runner, tmp_path, tiny_weights):
    src = _archive(tmp_path / "in", n=4)
    (src / "roll0" / "bad.jpg").write_bytes(b"not a jpeg")
    (src / "roll0" / "notes.txt").write_text("not a picture")
    out = tmp_path / "out"
    r, rep = _run(runner, src, "-o", out, "--model", tiny_weights)
    assert r.exit_code == EXIT_PARTIAL and rep["done"] == 4 and len(rep["failed"]) == 1
    items = _items(out)
    assert sorted((x["input"], x["status"]) for x in items) == sorted(
        [(f"roll{i % 3}/scan{i:02d}.jpg", "done") for i in range(4)] + [("roll0/bad.jpg", "failed")])
    assert all({"size", "mtime_ns", "output", "seconds", "time"} <= set(x) for x in items)
    s = json.loads(runner.invoke(app, ["status", str(out), "--json"]).stdout)
    assert s["done"] == 4 and s["failed"][0]["input"] == "roll0/bad.jpg" and s["pending"] == 0
    assert s["skipped"] == {"unsupported format .txt": 1}
    # rerun: nothing redone; the known failure is reported, not retried
    r, rep = _run(runner, src, "-o", out, "--model", tiny_weights)
    assert rep["done"] == 0 and rep["skipped_existing"] == 4 and len(rep["failed_before"]) == 1
    assert r.exit_code == EXIT_PARTIAL
    r, rep = _run(runner, src, "-o", out, "--model", tiny_weights, "--retry-failed")
    assert rep["done"] == 0 and len(rep["failed"]) == 1  # retried, still broken
    # a changed input is redone even though its output exists
    changed = src / "roll1" / "scan01.jpg"
    Image.open(PHOTOS / "skimage__rocket.jpg").resize((96, 96)).save(changed)
    before = sha(out / "roll1" / "scan01.jpg")
    r, rep = _run(runner, src, "-o", out, "--model", tiny_weights)
    assert rep["done"] == 1 and rep["outputs"] == [str(out / "roll1" / "scan01.jpg")]
    assert sha(out / "roll1" / "scan01.jpg") != before
    # other settings into the same folder: refused unless --overwrite
    r, _ = _run(runner, src, "-o", out, "--model", tiny_weights, "--saturation", "1.3")
    assert r.exit_code == EXIT_USAGE and "another model or other settings" in r.output
    r, rep = _run(runner, src, "-o", out, "--model", tiny_weights, "--saturation", "1.3", "--overwrite")
    assert rep["done"] == 4
    r, rep = _run(runner, src, "-o", out, "--model", tiny_weights, "--saturation", "1.3")
    assert rep["done"] == 0 and rep["skipped_existing"] == 4  # the folder now holds the new settings' outputs


def test_torn_journal_line_is_ignored_and_reported(runner, tmp_path, tiny_weights):
    src = _archive(tmp_path / "in", n=3)
    out = tmp_path / "out"
    _run(runner, src, "-o", out, "--model", tiny_weights)
    with open(out / "journal.jsonl", "a") as f:
        f.write('{"kind": "item", "input": "roll0/scan00.jpg", "sta')
    r = runner.invoke(app, ["status", str(out), "--json"])
    assert len(json.loads(r.stdout)["torn_lines"]) == 1
    r, rep = _run(runner, src, "-o", out, "--model", tiny_weights)
    assert r.exit_code == 0 and rep["skipped_existing"] == 3
    assert any("1 damaged line(s) ignored" in w and "rewritten without them" in w for w in rep["warnings"])
    r = runner.invoke(app, ["status", str(out), "--json"])
    s = json.loads(r.stdout)
    assert s["done"] == 3 and s["pending"] == 0 and s["torn_lines"] == []  # repaired by the rerun


def test_kill_9_mid_run_then_rerun_loses_and_duplicates_nothing(tmp_path, tiny_weights):
    src = _archive(tmp_path / "in", n=12, size=160)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "scgan_rt", "colorize", str(src), "-o", str(out), "--model", str(tiny_weights),
            "--batch-size", "1", "--backend", "torch"]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_items(out)) < 3 if out.exists() else time.monotonic() < deadline:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    first = {x["input"] for x in _items(out)}
    assert 3 <= len(first) < 12, "the kill came too late to test anything"
    r = subprocess.run(args + ["--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["done"] == 12 - len(first)
    done = [x["input"] for x in _items(out) if x["status"] == "done"]
    assert sorted(done) == sorted(set(done)) and len(done) == 12  # each input journalled once
    assert len(list(out.rglob("*.jpg"))) == 12 and not list(out.rglob("*partial*"))


def test_two_shards_partition_the_archive_and_status_merges_them(runner, tmp_path, tiny_weights):
    src = _archive(tmp_path / "in", n=10)
    whole = tmp_path / "whole"
    _run(runner, src, "-o", whole, "--model", tiny_weights)
    out = tmp_path / "sharded"
    seen = []
    for k in (1, 2):
        r, rep = _run(runner, src, "-o", out, "--model", tiny_weights, "--shard", f"{k}/2")
        assert r.exit_code == 0, r.output
        seen.append(set(rep["outputs"]))
        assert (out / f"journal.shard-{k}-of-2.jsonl").is_file()
    assert not seen[0] & seen[1] and seen[0] and seen[1]
    assert {Path(p).relative_to(out) for p in seen[0] | seen[1]} == {p.relative_to(whole) for p in whole.rglob("*.jpg")}
    for p in whole.rglob("*.jpg"):
        assert sha(p) == sha(out / p.relative_to(whole))  # identical to the unsharded run
    s = json.loads(runner.invoke(app, ["status", str(out), "--json"]).stdout)
    assert s["done"] == 10 and s["pending"] == 0 and s["planned"] == 10 and len(s["journals"]) == 2
    # adding a file moves no other file between shards
    Image.open(PHOTOS / "skimage__rocket.jpg").resize((96, 96)).save(src / "roll0" / "new.jpg")
    r, rep = _run(runner, src, "-o", out, "--model", tiny_weights, "--shard", "1/2")
    r2, rep2 = _run(runner, src, "-o", out, "--model", tiny_weights, "--shard", "2/2")
    assert rep["done"] + rep2["done"] == 1
    r = runner.invoke(app, ["colorize", str(src), "--shard", "3/2"])
    assert r.exit_code == EXIT_USAGE


def test_status_of_a_folder_without_a_journal_is_a_usage_error(runner, tmp_path):
    r = runner.invoke(app, ["status", str(tmp_path)])
    assert r.exit_code == EXIT_USAGE and "no journal" in r.output


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


def test_ray_equals_single_process_and_survives_a_killed_worker(local_ray, runner, tmp_path, tiny_weights):
    import threading

    from scgan_rt.journal import Journal
    from scgan_rt.pipeline import plan_jobs, settings_key
    from scgan_rt.ray_job import colorize_on_ray
    from scgan_rt.settings import InferConfig

    src = _archive(tmp_path / "in", n=8)
    single = tmp_path / "single"
    _run(runner, src, "-o", single, "--model", tiny_weights, "--backend", "torch", "--batch-size", "2")
    r, rep = _run(runner, src, "-o", tmp_path / "ray", "--model", tiny_weights, "--backend", "torch",
                  "--batch-size", "2", "--ray", "auto", "--ray-workers", "2")
    assert r.exit_code == 0, r.output
    assert rep["done"] == 8 and rep["backend"] == "ray/torch"
    for p in single.rglob("*.jpg"):
        assert sha(p) == sha(tmp_path / "ray" / p.relative_to(single))  # byte-identical
    assert len(_items(tmp_path / "ray")) == 8

    # a worker killed mid-run: Ray restarts it and retries its batch
    cfg = InferConfig(backend="torch", batch_size=1).validate()
    out = tmp_path / "killed"
    jobs = plan_jobs([src], out)
    journal = Journal(out, None, settings_key(cfg, "x"))
    import psutil

    killed: list[str] = []

    def kill_one():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            workers = [p for p in psutil.process_iter(["cmdline"])
                       if "MapWorker" in " ".join(p.info["cmdline"] or [])]
            if workers and out.exists() and list(out.rglob("*.jpg")):
                os.kill(workers[0].pid, signal.SIGKILL)
                killed.append(" ".join(workers[0].info["cmdline"]))
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one)
    killer.start()
    rep = colorize_on_ray(jobs, cfg, tiny_weights, journal=journal, workers=2)
    killer.join()
    journal.close()
    assert killed, "no Ray worker process was found to kill"
    assert len(rep.done) == 8 and not rep.failed
    assert sorted(p.relative_to(out) for p in out.rglob("*.jpg")) == sorted(p.relative_to(single)
                                                                           for p in single.rglob("*.jpg"))
    done = [x["input"] for x in _items(out)]
    assert sorted(done) == sorted(set(done)) and len(done) == 8
