"""Judgements in the ledger and ``rerun --rejected``: a person's verdicts survive, reach
the reports, and a redo pays exactly once more for each rejected task, with its edits,
the old request kept beside the old attempt."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import av
from PIL import Image

from runner.cli.commands import main
from runner.core.records import Verdict
from runner.ledger.reviews import Judging
from runner.reports import sheet, sheet_page
from tests.conftest import FAST
from tests.test_reruns import attempts, manifest  # noqa: F401  (the fixture)


def judge(run_dir: Path, key: str, **parts: object) -> None:
    ledger = Judging.open(run_dir)
    try:
        ledger.judge(key, **parts)
    finally:
        ledger.close()


def report_rows(run_dir: Path) -> dict[str, dict[str, str]]:
    with (run_dir / "report.csv").open(encoding="utf-8") as report:
        return {r["task_key"]: r for r in csv.DictReader(report)}


def test_rejected_tasks_are_made_again_once_with_their_edits(
    manifest,  # noqa: F811
    threaded_sim,
    tmp_path,
    capsys,
):
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    judge(run_dir, "one/1", verdict=Verdict.KEPT, note="lovely")
    judge(run_dir, "two/1", verdict=Verdict.REJECTED, note="the hand melts")
    judge(run_dir, "two/1", edits={"prompt": "second, hands still"})  # the verdict stays
    judge(run_dir, "three/1", verdict=Verdict.REJECTED)
    capsys.readouterr()

    assert main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "judged: 1 kept, 2 rejected" in out and "--rejected" in out
    assert main(["report", str(run_dir)]) == 0
    rows = report_rows(run_dir)
    assert (rows["one/1"]["verdict"], rows["one/1"]["note"]) == ("kept", "lovely")
    assert (rows["two/1"]["verdict"], rows["two/1"]["note"]) == ("rejected", "the hand melts")
    old_two = json.loads(
        sqlite3.connect(run_dir / "state.sqlite")
        .execute("SELECT request_json FROM tasks WHERE task_key = 'two/1'")
        .fetchone()[0]
    )

    first_take = (run_dir / "videos" / "two_1.mp4").read_bytes()
    assert main(["rerun", str(run_dir), "--rejected", *FAST]) == 0
    out = capsys.readouterr().out
    assert "2 rejected task(s) to make again, 1 with edits" in out
    earlier = run_dir / "videos" / "earlier"  # each take was paid for: the old one kept
    assert (earlier / "two_1.take1.mp4").read_bytes() == first_take
    assert json.loads((earlier / "two_1.take1.json").read_text("utf-8"))["prompt"] == "second"
    assert (earlier / "two_1.take1.jpg").is_file()
    assert (run_dir / "videos" / "two_1.mp4").read_bytes() != first_take
    books = threaded_sim.stats.created_by_prompt
    assert books == {"first": 1, "second": 1, "second, hands still": 1, "third": 2}
    assert [o for o, _ in attempts(run_dir, "two/1")] == ["created", "created"]

    with sqlite3.connect(run_dir / "state.sqlite") as db:
        kept = db.execute(
            "SELECT attempt, request_json FROM revisions WHERE task_key = 'two/1'"
        ).fetchall()
    assert [(a, json.loads(r)) for a, r in kept] == [(1, old_two)]  # beside attempt 1
    rows = report_rows(run_dir)
    assert rows["two/1"]["prompt"] == "second, hands still"
    assert rows["two/1"]["verdict"] == "" and rows["three/1"]["verdict"] == ""  # new takes
    assert rows["one/1"]["verdict"] == "kept"

    # Nothing is rejected now: a second redo pays for nothing.
    assert main(["rerun", str(run_dir), "--rejected", *FAST]) == 0
    assert "no task to rerun" in capsys.readouterr().out
    # The original manifest still names the edited task as it was: no conflict, no spend.
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    assert threaded_sim.stats.tasks_created == 5


def test_an_edit_is_checked_like_a_manifest_row_and_nothing_is_paid(
    manifest,  # noqa: F811
    threaded_sim,
    tmp_path,
    capsys,
):
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    judge(run_dir, "one/1", verdict=Verdict.REJECTED, edits={"duration": 7})
    judge(run_dir, "two/1", verdict=Verdict.REJECTED, edits={"image": "/etc/passwd"})
    capsys.readouterr()
    assert main(["rerun", str(run_dir), "--rejected", *FAST]) == 2
    err = capsys.readouterr().err
    assert f"{manifest}:3: row 'one': duration = 7:" in err  # the row's own place
    assert "row 'two': image = '/etc/passwd': not changed by an edit" in err
    assert threaded_sim.stats.tasks_created == 3


def test_a_judgement_belongs_to_the_attempt_it_judged(manifest, threaded_sim, tmp_path):  # noqa: F811
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    judge(run_dir, "one/1", verdict=Verdict.REJECTED, note="drifts")
    assert main(["rerun", str(run_dir), "--keys", "one/1", *FAST]) == 0
    ledger = Judging.open(run_dir, read_only=True)
    try:
        assert "one/1" not in ledger.reviews()  # the new video is not judged yet
    finally:
        ledger.close()
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        history = db.execute("SELECT attempt, verdict, note FROM reviews").fetchall()
    assert history == [(1, "rejected", "drifts")]


def test_export_copies_the_kept_videos_with_their_stories_and_never_overwrites(
    manifest,  # noqa: F811
    threaded_sim,
    tmp_path,
    capsys,
):
    run_dir, dest = tmp_path / "run", tmp_path / "chosen"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    assert main(["export", str(run_dir), "--kept", str(dest)]) == 0
    assert "no video is kept yet" in capsys.readouterr().out and not dest.exists()
    judge(run_dir, "one/1", verdict=Verdict.KEPT, note="the opener")
    judge(run_dir, "two/1", verdict=Verdict.REJECTED)

    assert main(["export", str(run_dir), "--kept", str(dest)]) == 0
    assert "1 kept video(s) copied" in capsys.readouterr().out
    assert sorted(p.name for p in dest.iterdir()) == ["one_1.jpg", "one_1.json", "one_1.mp4"]
    assert (dest / "one_1.mp4").read_bytes() == (run_dir / "videos" / "one_1.mp4").read_bytes()
    story = json.loads((dest / "one_1.json").read_text(encoding="utf-8"))
    assert story["task_key"] == "one/1" and story["prompt"] == "first"
    assert (story["verdict"], story["note"]) == ("kept", "the opener")
    with av.open(str(dest / "one_1.mp4")) as video:  # the tags travel inside the file
        assert video.metadata.get("title") == "one/1"

    assert main(["export", str(run_dir), "--kept", str(dest)]) == 0  # again: nothing new
    assert "0 kept video(s) copied to" in capsys.readouterr().out
    (dest / "one_1.mp4").write_bytes(b"another night's video")
    assert main(["export", str(run_dir), "--kept", str(dest)]) == 2
    assert "already holds other files of these names" in capsys.readouterr().err
    assert (dest / "one_1.mp4").read_bytes() == b"another night's video"


def test_the_contact_sheet_shows_the_judgements(manifest, threaded_sim, tmp_path):  # noqa: F811
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    before = (run_dir / "contact-sheet.jpg").read_bytes()
    judge(run_dir, "one/1", verdict=Verdict.KEPT)
    judge(run_dir, "two/1", verdict=Verdict.REJECTED)
    assert main(["report", str(run_dir)]) == 0  # a page whose tiles were judged is redrawn
    assert (run_dir / "contact-sheet.jpg").read_bytes() != before
    with Image.open(run_dir / "contact-sheet.jpg") as drawn:
        picture = drawn.convert("RGB")
    top = sheet_page.MARGIN + sheet_page.LINE_PX + sheet_page.GAP  # the first line's tiles
    red, green, blue = picture.getpixel((sheet_page.MARGIN + 40, top - sheet_page.GAP // 2 - 1))
    assert green > 150 and red < 120 and blue < 140  # kept: a green band over its tile
    ledger = Judging.open(run_dir, read_only=True)
    try:
        tiles = sheet.plan_pages(ledger.tasks(), run_dir, "t", ledger.reviews())[0].tiles
    finally:
        ledger.close()
    assert [t.verdict for t in tiles] == ["kept", "rejected", None]
