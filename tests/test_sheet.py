"""The contact sheet: one tile per task (source image, frames at start, middle and end,
key, status, model, length), failures as labelled tiles, one column per model when a run
compares several, pages past a page's worth, drawn again by ``kling-batch sheet``, and
labels that never show a box for a glyph the font lacks."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from runner.cli.commands import main
from runner.core.records import TaskStatus
from runner.ledger.transitions import RunState
from runner.media import frames as video_frames
from runner.reports import sheet, sheet_page
from tests.conftest import FAST, draw_image, write_rows
from tests.test_model_runs import comparison  # noqa: F401  (a fixture)


def tiles_of(run_dir: Path) -> list[sheet_page.Tile]:
    state = RunState.open(run_dir, read_only=True)
    try:
        return [sheet.tile_of(record, run_dir) for record in state.tasks()]
    finally:
        state.close()


def test_the_run_draws_a_sheet_the_page_links_and_sheet_draws_again(tmp_path, threaded_sim, capsys):
    Image.new("RGB", (640, 360), (20, 200, 40)).save(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "m.yaml", 2)
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    assert f"contact sheet: {run_dir / 'contact-sheet.jpg'}" in capsys.readouterr().out
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert '<a href="contact-sheet.jpg">contact sheet</a>' in page

    with Image.open(run_dir / "contact-sheet.jpg") as drawn:
        picture = drawn.convert("RGB")
    top = sheet_page.MARGIN + sheet_page.LINE_PX + sheet_page.GAP
    # The first tile: the source image, then the video's frames (the same green picture).
    for cell in range(4):
        x = sheet_page.MARGIN + cell * (sheet_page.CELL + sheet_page.GAP) + sheet_page.CELL // 2
        red, green, blue = picture.getpixel((x, top + sheet_page.CELL // 2))
        assert green > 150 and red < 80 and blue < 80, cell

    (run_dir / "contact-sheet.jpg").unlink()
    assert main(["sheet", str(run_dir)]) == 0
    assert (run_dir / "contact-sheet.jpg").is_file()


def test_frames_are_taken_at_the_start_middle_and_end(tmp_path, threaded_sim):
    picture = Image.new("RGB", (640, 360), (30, 60, 120))
    ImageDraw.Draw(picture).ellipse((280, 140, 360, 220), (255, 255, 255))
    picture.save(tmp_path / "frame.png")  # a sun on a sky: the push-in makes it grow
    manifest = write_rows(tmp_path / "m.yaml", 1)
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    frames = video_frames.frames_of(run_dir / "videos" / "r0_1.mp4")
    assert len(frames) == 3 and all(frame is not None for frame in frames)
    start, middle, end = (frame.convert("L") for frame in frames if frame is not None)
    assert max(start.size) == sheet_page.CELL
    suns = [
        sum(frame.point(lambda v: 255 if v > 200 else 0).histogram()[255:])
        for frame in (start, middle, end)
    ]
    assert suns[0] < suns[1] < suns[2]  # three different moments, in order


def test_a_video_that_cannot_be_decoded_still_gets_a_tile(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(100))
    assert video_frames.frames_of(broken) == [None, None, None]


def test_a_failure_is_a_tile_with_its_reason(tmp_path, threaded_sim):
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "m.yaml", 2)
    threaded_sim.script_fates("fail", "succeed")
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 1
    tiles = {tile.task_key: tile for tile in tiles_of(run_dir)}
    failed = next(tile for tile in tiles.values() if tile.status is TaskStatus.FAILED)
    assert failed.video is None
    assert failed.problem is not None and "TASK_FAILED" in failed.problem
    assert failed.label.startswith("failed - kling-v2.6-pro-i2v - 5 s")
    good = next(tile for tile in tiles.values() if tile.status is TaskStatus.SUCCEEDED)
    assert good.video is not None and good.problem is None
    assert good.label == "succeeded - kling-v2.6-pro-i2v - 5.0 s"


def test_several_models_are_one_column_each_for_every_input(comparison, tmp_path, threaded_sim):  # noqa: F811
    run_dir = tmp_path / "run"
    assert main(["run", str(comparison), "--out", str(run_dir), *FAST]) == 0
    tiles = tiles_of(run_dir)
    models = sorted({tile.model for tile in tiles})
    lines = sheet.lay_out(tiles, models)
    assert len(lines) == 2  # two inputs: the cat row (four models) and the city row (one)
    cat, city = lines
    assert [tile.model if tile else None for tile in cat] == [
        m if m != "kling-v3.0-std-t2v" else None for m in models
    ]
    assert [tile.model if tile else None for tile in city] == [
        m if m == "kling-v3.0-std-t2v" else None for m in models
    ]
    with Image.open(run_dir / "contact-sheet.jpg") as drawn:  # five columns side by side
        assert drawn.width > len(models) * 3 * sheet_page.CELL


def test_pages_past_a_page_worth_and_no_stale_page_is_left(tmp_path, threaded_sim, monkeypatch):
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "m.yaml", 7)
    run_dir = tmp_path / "run"
    monkeypatch.setattr(sheet, "TILES_PER_PAGE", 3)  # one line of three tiles a page
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    names = [page.name for page in sheet.sheet_pages(run_dir)]
    assert names == ["contact-sheet.jpg", "contact-sheet-2.jpg", "contact-sheet-3.jpg"]
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert '<a href="contact-sheet-3.jpg">page 3</a>' in page

    monkeypatch.setattr(sheet, "TILES_PER_PAGE", 6)
    assert main(["sheet", str(run_dir)]) == 0
    assert [page.name for page in sheet.sheet_pages(run_dir)] == [
        "contact-sheet.jpg",
        "contact-sheet-2.jpg",
    ]


@pytest.mark.parametrize(
    ("text", "drawn"),
    [
        ("cat/1", "cat/1"),
        ("café crème", "cafe creme"),
        ("猫_001/1", "?_001/1"),
        ("🐱 party 🎉", "? party ?"),
        ("4032×3024 → ok", "4032?3024 ? ok"),
        ("tab\tand\nnewline", "tab and newline"),
    ],
)
def test_labels_keep_to_what_the_font_draws(text, drawn):
    assert sheet_page.drawable(text) == drawn


def test_every_character_a_label_can_hold_has_a_glyph_in_the_font():
    """What ``drawable`` lets through must come out as ink: the bitmap font has
    printable ASCII only (a CJK character makes it raise, which is why labels are
    folded first)."""
    font = sheet_page._font()

    def ink(character: str) -> bool:
        canvas = Image.new("L", (24, 24))
        ImageDraw.Draw(canvas).text((4, 4), character, 255, font)
        return canvas.getbbox() is not None

    for code in range(0x21, 0x7F):
        assert ink(chr(code)), chr(code)
    with pytest.raises(UnicodeEncodeError):
        ink("猫")
    assert all(ink(c) for c in sheet_page.drawable("猫 café ✨") if c != " ")


def test_frames_are_kept_at_download_and_the_sheet_reads_them_without_the_video(
    tmp_path, threaded_sim, monkeypatch
):
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "m.yaml", 1)
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    video = run_dir / "videos" / "r0_1.mp4"
    strip = run_dir / "videos" / ".frames" / "r0_1.jpg"
    assert strip.is_file()
    kept = [frame.size for frame in video_frames.frames_of(video) if frame is not None]

    def no_decoding(*args, **kwargs):
        raise AssertionError("the video was opened")

    with monkeypatch.context() as patched:
        patched.setattr(video_frames.av, "open", no_decoding)
        assert [f.size for f in video_frames.frames_of(video) if f is not None] == kept
        assert main(["sheet", str(run_dir)]) == 0

    strip.unlink()  # gone (or older than its video): made again from the video
    assert [f.size for f in video_frames.frames_of(video) if f is not None] == kept
    assert strip.is_file()
