"""The job journal: what a ``colorize`` run into an output folder did, item by item.

One JSON object per line in ``OUT/journal.jsonl`` (``journal.shard-K-of-N.jsonl`` per
shard), appended with ``O_APPEND`` and fsync'd line by line, so a crash (even ``kill -9``)
leaves at most one torn last line, which readers ignore and report. Kinds of line:

* ``{"kind": "run", ...}``: a run started: shard, planned items, settings key, model.
* ``{"kind": "item", "input": REL, "source": PATH, "size", "mtime_ns", "output": REL, "status":
  done|failed|skipped, "reason", "seconds", "time", "sha256"?}``: one finished item (``source``,
  the input's absolute path, lets ``report.html`` show it beside its output).

Resume reads every journal in the folder: an input whose last line says ``done`` and
whose size and mtime (and sha256 with ``--verify``) are unchanged is skipped; ``failed``
items are retried with ``--retry-failed``; changed inputs are redone.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from .atomic import atomic_path
from .errors import UsageError

PREFIX = "journal"
SUFFIX = ".jsonl"


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    @classmethod
    def parse(cls, text: str | None) -> "Shard | None":
        if not text:
            return None
        try:
            k, n = (int(x) for x in text.split("/"))
        except ValueError:
            raise UsageError(f"--shard must be K/N (e.g. 2/8), got {text!r}") from None
        if not 1 <= k <= n:
            raise UsageError(f"--shard K/N needs 1 <= K <= N, got {text!r}")
        return cls(k, n)

    def owns(self, rel: str) -> bool:
        """A stable hash of the input's relative path: adding files moves no other file."""
        return _stable_hash(rel) % self.count == self.index - 1

    def owns_segment(self, rel: str, i: int) -> bool:
        """Segments of a film dealt round-robin from a shard the film's hash picks: each of
        N shards gets within one segment of an equal share (hashing each segment did not)."""
        return (_stable_hash(rel) + i) % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big")


def journal_path(root: Path, shard: Shard | None) -> Path:
    name = PREFIX if shard is None else f"{PREFIX}.shard-{shard.index}-of-{shard.count}"
    return root / (name + SUFFIX)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class History:
    """Every journal line in a folder, the last item line per input winning."""

    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    torn: list[str] = field(default_factory=list)  # journals whose last line was cut short

    @classmethod
    def read(cls, root: Path) -> "History":
        hist = cls()
        for path in sorted(root.glob(f"{PREFIX}*{SUFFIX}")):
            run: dict[str, Any] | None = None
            lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
            for k, line in enumerate(lines):
                if not line.strip():
                    continue
                rec = _parsed(line)
                if rec is None:  # whole lines are written: a crash tore it, or foreign bytes
                    hist.torn.append(f"{path.name}:{k + 1}")
                    continue
                if rec.get("kind") == "run":
                    run = rec | {"journal": path.name, "last": rec.get("time", 0), "done": 0}
                    hist.runs.append(run)
                elif rec.get("kind") == "item":
                    hist.items[rec["input"]] = rec | {"journal": path.name}
                    if run is not None:  # the run an item line follows did it
                        run["last"] = rec.get("time", run["last"])
                        run["done"] += rec.get("status") == "done"
        hist.runs.sort(key=lambda r: r.get("time", 0))
        return hist

    def settings_keys(self) -> set[str]:
        """The settings the folder's current outputs were made with (the last line per input)."""
        return {r["settings"] for r in self.items.values() if r.get("status") == "done" and r.get("settings")}


class Journal:
    """Appends to this run's journal file; knows the folder's history for resuming."""

    def __init__(self, root: Path, shard: Shard | None, settings: str, verify: bool = False) -> None:
        self.root, self.shard, self.settings, self.verify = root, shard, settings, verify
        self.path = journal_path(root, shard)
        self.history = History.read(root) if root.is_dir() else History()
        self._fd: int | None = None
        self.repaired = False  # this run rewrote its journal without damaged lines

    def check_settings(self, overwrite: bool) -> None:
        """Refuse to mix outputs of another model or other settings into one folder."""
        other = self.history.settings_keys() - {self.settings}
        if other and not overwrite:
            raise UsageError(f"{self.root} holds outputs made with another model or other settings (journal "
                             f"{self.history.runs[-1]['journal']}); add --overwrite to redo them with these, "
                             f"or choose another -o")

    def start(self, planned: int, backend: str, model: str, unsupported: dict[str, int] | None = None,
              shared: Sequence[str] = ()) -> None:
        """Write the run's line now (a run is visible from its start, even if killed before
        its first item), after rewriting this journal without damaged lines. ``unsupported``:
        the folder files it skips as neither image nor video, by reason; ``planned`` counts
        the inputs this shard owns; ``shared`` names the films every shard works on
        (segments), counted once by ``status``."""
        self._repair()
        self._append({"kind": "run", "time": time.time(), "shard": str(self.shard) if self.shard else None,
                      "planned": planned, "shared": sorted(shared), "settings": self.settings, "backend": backend,
                      "model": model, "pid": os.getpid(), "unsupported": unsupported or {}})

    def damage_note(self) -> str:
        """The one report of damaged lines (a crash mid-write, or bytes that are not ours)."""
        fixed = f"; {self.path.name} rewritten without them" if self.repaired else ""
        return f"journal: {len(self.history.torn)} damaged line(s) ignored ({', '.join(self.history.torn)}){fixed}"

    def _repair(self) -> None:
        """Rewrite this run's journal atomically without the lines ``History.read`` could not
        parse (other shards' journals are theirs to repair)."""
        if not any(t.rsplit(":", 1)[0] == self.path.name for t in self.history.torn):
            return
        self.repaired = True
        lines = self.path.read_text(encoding="utf-8", errors="replace").split("\n")
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(line + "\n" for line in lines if line.strip() and _parsed(line) is not None), encoding="utf-8")

    def previous(self, rel: str, src: Path) -> dict[str, Any] | None:
        """The last line about ``src`` if it still describes the file as it is now, under
        this run's settings."""
        rec = self.history.items.get(rel)
        if rec is None or rec.get("settings") != self.settings:
            return None  # unknown, or decided under other settings (e.g. a colour skip before --force)
        st = _stat(src)
        if st is None or rec.get("size") != st.st_size or rec.get("mtime_ns") != st.st_mtime_ns:
            return None
        if self.verify and rec.get("sha256") and rec["sha256"] != file_sha256(src):
            return None
        return rec

    def record(self, rel: str, src: Path, output: Path | None, status: str, reason: str = "",
               seconds: float | None = None) -> None:
        """One finished item; ``output`` (written) is kept relative to the journal's folder."""
        st = _stat(src)  # None: the input vanished (its failure is still recorded)
        rec: dict[str, Any] = {"kind": "item", "input": rel, "source": str(src.resolve()),
                               "size": st and st.st_size, "mtime_ns": st and st.st_mtime_ns,
                               "output": None if output is None else self._relative(output), "status": status,
                               "reason": reason, "time": time.time(), "settings": self.settings,
                               "seconds": None if seconds is None else round(seconds, 3)}
        if self.verify and st is not None and stat.S_ISREG(st.st_mode):
            rec["sha256"] = file_sha256(src)
        self._append(rec)

    def _relative(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)

    def _append(self, rec: dict[str, Any]) -> None:
        if self._fd is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._heal()
        os.write(self._fd, (json.dumps(rec, sort_keys=True) + "\n").encode("utf-8"))
        os.fsync(self._fd)

    def _heal(self) -> None:
        """Start on a fresh line after a torn one, so the next record is whole."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size:
            with open(self.path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    os.write(self._fd, b"\n")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _parsed(line: str) -> dict[str, Any] | None:
    """A journal line as written (a run line, or an item line with input and status); None
    for anything else."""
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    if not isinstance(rec, dict):
        return None
    if rec.get("kind") == "item" and not (isinstance(rec.get("input"), str) and isinstance(rec.get("status"), str)):
        return None
    return rec


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None


def status(root: Path) -> dict[str, Any]:
    """``scgan-rt status``: what every journal in ``root`` says, merged over shards."""
    if not root.is_dir():
        raise UsageError(f"not a folder: {root}")
    hist = History.read(root)
    if not any(root.glob(f"{PREFIX}*{SUFFIX}")):
        raise UsageError(f"no journal in {root} (it is written by `scgan-rt colorize ... -o {root}`)")
    items = list(hist.items.values())
    by: dict[str, list[dict[str, Any]]] = {"done": [], "failed": [], "skipped": []}
    for rec in items:
        by.setdefault(rec["status"], []).append(rec)
    latest: dict[str, dict[str, Any]] = {}
    for run in hist.runs:  # the newest run of each journal (shard) says how much was planned
        latest[run["journal"]] = run
    shared = set().union(*(r.get("shared", []) for r in latest.values()))
    planned = max(len(items), sum(r.get("planned", 0) for r in latest.values()) + len(shared))
    pending = max(0, planned - len(items))
    busy = sum(r["last"] - r["time"] for r in hist.runs if r["done"])
    rate = sum(r["done"] for r in hist.runs) / busy if busy > 0 else 0.0
    skipped: dict[str, int] = {}
    for r in by["skipped"]:
        skipped[r.get("reason") or "skipped"] = skipped.get(r.get("reason") or "skipped", 0) + 1
    for run in latest.values():  # files no shard takes on: counted once per journal's latest run
        for reason, n in run.get("unsupported", {}).items():
            skipped[reason] = max(skipped.get(reason, 0), n)
    return {
        "folder": str(root), "journals": sorted(p.name for p in root.glob(f"{PREFIX}*{SUFFIX}")), "planned": planned, "done": len(by["done"]),
        "failed": [{"input": r["input"], "reason": r.get("reason", "")} for r in by["failed"]],
        "skipped": skipped, "pending": pending, "items_per_s": round(rate, 3),
        "eta_s": round(pending / rate, 1) if rate > 0 and pending else (0.0 if not pending else None),
        "torn_lines": hist.torn,
    }
