"""``--report``: the HTML contact sheet opened in a real (headless) Chromium: every image
loads, no console errors, and a screenshot is kept as a test artifact."""
from __future__ import annotations

import json
import re
import os
import shutil
from pathlib import Path

import pytest

from clips import noisy_still, write_clip
from conftest import PHOTOS
from scgan_rt.cli import app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("SCGAN_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))


def _open_in_chromium(page_path: Path, shot: Path) -> dict:
    sync_api = pytest.importorskip("playwright.sync_api")
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.resolve().as_uri(), wait_until="load", timeout=60_000)
            # lazy images below the fold load once scrolled to
            page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=60_000)
            images = page.evaluate("Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth])")
            svgs = page.evaluate("document.querySelectorAll('svg').length")
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    return {"images": images, "errors": errors, "svgs": svgs}


def test_colorize_report_in_a_browser(runner, tmp_path, tiny_weights):
    src = tmp_path / "in"
    src.mkdir()
    for f in sorted(PHOTOS.glob("*.jpg"))[:3]:
        shutil.copy(f, src / f.name)
    write_clip(src / "clip.mp4", noisy_still(PHOTOS / "skimage__coffee.jpg", n=8, w=96, h=64))
    (src / "broken.png").write_bytes(b"not a png")
    r = runner.invoke(app, ["colorize", str(src), "-o", str(tmp_path / "out"), "--model", str(tiny_weights),
                            "--report", "--json"])
    assert r.exit_code == 6, r.output  # the broken file fails, the rest is written
    rep = json.loads(r.stdout[r.stdout.index("{"):])
    page = Path(rep["report"])
    text = page.read_text()
    assert text.count("class='card done'") == 4 and text.count("class='card failed'") == 1
    assert "not a readable image" in text
    assert "flicker " in text and "source flicker " in text  # the clip's card carries its flicker
    got = _open_in_chromium(page, ARTIFACTS / "colorize_report.png")
    assert got["errors"] == []
    assert len(got["images"]) == 3 * 2 + 4  # input | output per photo, a strip of 4 frames for the clip
    assert all(w > 0 for _, w in got["images"]), got["images"]


def test_evaluate_report_in_a_browser(runner, tmp_path, tiny_weights):
    folder = tmp_path / "truth"
    folder.mkdir()
    for f in sorted(PHOTOS.glob("*.jpg"))[:4]:
        shutil.copy(f, folder / f.name)
    r = runner.invoke(app, ["evaluate", str(folder), "--model", str(tiny_weights), "--report", "--json"])
    assert r.exit_code == 0, r.output
    page = Path(json.loads(r.stdout[r.stdout.index("{"):])["report"])
    assert page == tmp_path / "truth_evaluation" / "report.html"
    got = _open_in_chromium(page, ARTIFACTS / "evaluate_report.png")
    assert got["errors"] == [] and got["svgs"] == 3  # CCI histogram, PSNR and SSIM scatter
    assert len(got["images"]) == 4 * 3 and all(w > 0 for _, w in got["images"])


def test_pages_split_for_large_runs(tmp_path):
    from scgan_rt.report import PAGE_ITEMS, Item, Sheet

    sheet = Sheet(tmp_path)
    sheet.items = [Item(f"p{i}.jpg", "done") for i in range(2 * PAGE_ITEMS + 5)]
    first = sheet.write("many")
    pages = sorted(p.name for p in tmp_path.glob("report*.html"))
    assert pages == ["report.html", "report_2.html", "report_3.html"]
    assert "href='report_2.html'" in first.read_text() and first.stat().st_size < 200_000


def _folder_of_photos(tmp_path: Path) -> Path:
    """Two gray photos, one colour photo and one broken file."""
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    for f in sorted(PHOTOS.glob("*.jpg"))[:2]:
        Image.open(f).convert("L").save(src / f.name)
    shutil.copy(sorted(PHOTOS.glob("*.jpg"))[2], src / "colour.jpg")
    (src / "broken.png").write_bytes(b"not a png")
    return src


def _cards(page: Path) -> list[str]:
    import re

    return re.findall(r"<span class='status'>([^<]*)</span>", page.read_text())


def test_report_describes_the_output_folder_and_survives_a_rerun(runner, tmp_path, tiny_weights):
    src, out = _folder_of_photos(tmp_path), tmp_path / "out"
    args = ["colorize", str(src), "-o", str(out), "--model", str(tiny_weights), "--skip-color", "--report"]
    r = runner.invoke(app, args)
    assert r.exit_code == 6, r.output
    page = out / "report.html"
    assert f"report: {page}" in r.stdout  # the CLI says where it is
    assert sorted(_cards(page)) == ["done", "done", "failed", "skipped: already colour"]
    text = page.read_text()
    for fact in ("mean chroma ", "colourfulness ", " KiB", "not a readable image"):
        assert fact in text, fact
    for raw in ("skipped_existing", "photo_batch", "compile_seconds", "video_fps", "failed_before",
                "films_pending", "None", "[]", "already done or colour"):
        assert raw not in text, raw
    first_pictures = sorted(p.name for p in (out / "report_files").glob("*.jpg"))

    r = runner.invoke(app, args)  # the rerun an archivist makes to resume: nothing new to do
    assert r.exit_code == 6, r.output
    assert sorted(_cards(page)) == ["done earlier", "done earlier", "failed earlier", "skipped: already colour"]
    assert page.read_text().count("<img ") == 2 * 2  # input | output of both photos, still there
    for name in re.findall(r"src='report_files/([^']+)'", page.read_text()):
        assert (out / "report_files" / name).is_file()
    assert sorted(p.name for p in (out / "report_files").glob("*.jpg")) == first_pictures  # reused, not redone

    outputs = {p: p.stat().st_mtime_ns for p in out.glob("*.jpg")}
    page.unlink()
    r = runner.invoke(app, ["status", str(out), "--report"])  # rebuilt without colorizing anything
    assert r.exit_code == 0 and f"report: {page}" in r.stdout, r.output
    assert len(_cards(page)) == 4 and {p: p.stat().st_mtime_ns for p in out.glob("*.jpg")} == outputs


def test_report_merges_the_shards(runner, tmp_path, tiny_weights):
    src, out = _folder_of_photos(tmp_path), tmp_path / "out"
    for k in (1, 2):
        r = runner.invoke(app, ["colorize", str(src), "-o", str(out), "--model", str(tiny_weights), "--skip-color",
                                "--shard", f"{k}/2", "--report"])
        assert r.exit_code in (0, 6), r.output
    cards = _cards(out / "report.html")  # every shard's items on one sheet
    assert len(cards) == 4 and sum(c.startswith("done") for c in cards) == 2 and "skipped: already colour" in cards
    assert "Planned</th><td>4" in (out / "report.html").read_text()
