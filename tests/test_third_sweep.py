"""The third sweep (issue 29): what a new user and a security reviewer broke, each fed
as they fed it, with the message, the exit code, the simulator's books and the disk
as the judges."""

from __future__ import annotations

import sqlite3

from runner.cli import main
from tests.conftest import FAST, draw_image, ledger_statuses

LONG_JAPANESE = "夜の港で静かに揺れる小さな船と灯台の光が水面に映る情景を描いた長い名前の行です" * 2


def test_a_long_japanese_row_id_and_picture_name_are_paid_once_and_saved(threaded_sim, tmp_path):
    """80 CJK characters are 240 bytes: a name is at most 255 bytes on most disks."""
    folder = tmp_path / "pictures"
    draw_image(folder / f"{LONG_JAPANESE[:70]}.png")
    draw_image(tmp_path / "frame.png")
    manifest = tmp_path / "night.yaml"
    manifest.write_text(
        f"defaults: {{sound: false}}\nrows:\n"
        f"  - {{id: '{LONG_JAPANESE[:80]}', image: frame.png, prompt: p}}\n"
        f"  - {{id: 港, image: pictures/, prompt: q}}\n",
        encoding="utf-8",
    )
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    assert set(ledger_statuses(run_dir).values()) == {"succeeded"}
    names = [p.name for p in (run_dir / "videos").iterdir() if p.suffix == ".mp4"]
    assert len(names) == 2 and all(len(n.encode()) <= 124 for n in names)
    assert threaded_sim.stats.tasks_created == 2
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM tasks WHERE video_path IS NULL").fetchone()[0] == 0
