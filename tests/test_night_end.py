"""The night's end grows slower than the night: what it needs of each task is made when
that task ends (its source picture's thumbnail, at download), a contact-sheet page
drawn from what it shows is never drawn again, and the keeper draws finished pages
while the night runs, so the end draws only what changed after its last look.
"""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from runner.cli.commands import main
from runner.ledger.transitions import RunState
from runner.media import thumbs
from runner.reports import sheet
from runner.run import sheet_keeper
from tests.conftest import FAST, draw_image, write_rows

ALL_PAGES = ["contact-sheet-2.jpg", "contact-sheet-3.jpg", "contact-sheet.jpg"]


@pytest.fixture
def pages_drawn(monkeypatch) -> list[str]:
    """The names of the sheet pages drawn from now on (three tiles a page)."""
    monkeypatch.setattr(sheet, "TILES_PER_PAGE", 3)
    drawn: list[str] = []
    real = sheet.write_page

    def counted(page):
        drawn.append(page.path.name)
        return real(page)

    monkeypatch.setattr(sheet, "write_page", counted)
    return drawn


@pytest.fixture
def seven_done(tmp_path, threaded_sim, pages_drawn) -> Path:
    """A finished run of seven tasks (three sheet pages), each with its own picture."""
    rows = []
    for index in range(7):
        draw_image(tmp_path / f"p{index}.png", 640, 360)
        rows.append(f"  - {{id: r{index}, image: p{index}.png, prompt: 'prompt {index}'}}")
    manifest = tmp_path / "m.yaml"
    manifest.write_text("defaults: {sound: false}\nrows:\n" + "\n".join(rows) + "\n")
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    assert sorted(pages_drawn) == [
        "contact-sheet-2.jpg",
        "contact-sheet-3.jpg",
        "contact-sheet.jpg",
    ]
    pages_drawn.clear()
    return run_dir


def test_a_page_drawn_from_what_it_shows_is_not_drawn_again(seven_done, pages_drawn):
    run_dir = seven_done
    assert main(["report", str(run_dir)]) == 0
    assert pages_drawn == []  # nothing changed since the night's end

    state = RunState.open(run_dir)
    state.requeue(["r4/1"], "rerun requested")  # the second page's middle task
    state.close()
    assert main(["report", str(run_dir)]) == 0
    assert pages_drawn == ["contact-sheet-2.jpg"]  # that page alone

    (run_dir / "contact-sheet-3.jpg").unlink()  # a page gone is drawn again
    assert main(["report", str(run_dir)]) == 0
    assert pages_drawn[1:] == ["contact-sheet-3.jpg"]

    pages_drawn.clear()
    assert main(["sheet", str(run_dir)]) == 0  # asked for by name: every page
    assert sorted(pages_drawn) == [
        "contact-sheet-2.jpg",
        "contact-sheet-3.jpg",
        "contact-sheet.jpg",
    ]


def test_a_page_is_drawn_again_when_its_drawing_changes(seven_done, pages_drawn, monkeypatch):
    monkeypatch.setattr("runner.reports.sheet_page.DRAWING_VERSION", 99)
    assert main(["report", str(seven_done)]) == 0
    assert len(pages_drawn) == 3


def test_finished_only_leaves_a_page_whose_task_can_still_change(seven_done, pages_drawn):
    run_dir = seven_done
    state = RunState.open(run_dir)
    state.requeue(["r1/1"], "rerun requested")  # the first page: pending again
    state.close()
    for page in run_dir.glob("contact-sheet*.jpg"):
        page.unlink()
    assert sheet_keeper.draw_finished_pages(run_dir) == 3
    assert sorted(pages_drawn) == ["contact-sheet-2.jpg", "contact-sheet-3.jpg"]
    assert not (run_dir / "contact-sheet.jpg").exists()  # left for the night's end


@pytest.fixture
def two_done(tmp_path, threaded_sim) -> Path:
    draw_image(tmp_path / "frame.png")
    run_dir = tmp_path / "run"
    manifest = write_rows(tmp_path / "m.yaml", 2)
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    return run_dir


async def test_the_keeper_draws_finished_pages_while_the_night_runs(two_done):
    """The keeper's own process draws the page, and keeps the fingerprint of what it
    showed: the night's end then has nothing to draw."""
    run_dir = two_done
    (run_dir / "contact-sheet.jpg").unlink()
    (run_dir / sheet.DRAWN_FILE).unlink()
    passes = asyncio.Event()
    async with sheet_keeper.sheet_kept(run_dir, every_s=0.01, after_pass=passes.set):
        await asyncio.wait_for(passes.wait(), timeout=60)
    assert (run_dir / "contact-sheet.jpg").is_file()
    state = RunState.open(run_dir, read_only=True)
    (page,) = sheet.plan_pages(state.tasks(), run_dir, run_dir.name)
    state.close()
    kept = json.loads((run_dir / sheet.DRAWN_FILE).read_text())
    assert kept == {"contact-sheet.jpg": page.fingerprint}


async def test_leaving_the_keeper_waits_for_its_pass(tmp_path, monkeypatch):
    """The night's end writes the same files: a pass under way finishes first. The pass
    here (in a thread) is held until 50 ms after the night has begun to leave."""
    started, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def held_pass(run_dir: Path) -> int:
        started.set()
        release.wait(timeout=30)
        finished.append("done")
        return 0

    monkeypatch.setattr(sheet_keeper, "one_worker", lambda: ThreadPoolExecutor(1))
    monkeypatch.setattr(sheet_keeper, "draw_finished_pages", held_pass)
    async with sheet_keeper.sheet_kept(tmp_path, every_s=0):
        await asyncio.to_thread(started.wait, 30)
        asyncio.get_running_loop().call_later(0.05, release.set)
    assert finished == ["done"]


def test_a_source_thumbnail_is_made_once_and_read_afterwards(seven_done, pages_drawn, monkeypatch):
    run_dir = seven_done
    kept = sorted((run_dir / thumbs.THUMBS_DIR).iterdir())
    assert len(kept) == 7  # one per picture, made as each video came
    with Image.open(kept[0]) as thumb:
        assert max(thumb.size) == thumbs.THUMB_PX

    def no_decoding(*args, **kwargs):
        raise AssertionError("a source picture was decoded again")

    monkeypatch.setattr(thumbs, "small_picture", no_decoding)
    assert main(["sheet", str(run_dir)]) == 0  # every page drawn, from the thumbnails
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert page.count(f'src="{thumbs.THUMBS_DIR}/') == 7
    assert "data:image/jpeg;base64" not in page  # a link, not the picture inline

    monkeypatch.undo()
    draw_image(run_dir.parent / "p0.png", 360, 640)  # edited: a new thumbnail
    assert main(["report", str(run_dir)]) == 0
    assert len(list((run_dir / thumbs.THUMBS_DIR).iterdir())) == 8
