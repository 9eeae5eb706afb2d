"""Chains through the simulator over a real socket: each link is sent once its parent's
video is downloaded and whole, with that video's last frame as its first; a failed link
stops only its chain; ``rerun --failed`` and ``resume`` pick a chain up where it stopped;
the simulator's books show each link paid once."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from runner.cli.commands import main
from runner.ledger.reviews import Judging
from runner.media.last_frame import last_frame
from runner.review.view import snapshot
from runner.run.films import film_seconds
from runner.simulator import SimConfig, Simulator, simulator_in_thread
from tests.conftest import CANARY_FAST, FAST, SIM_KEY, runner_process, wait_until

THREE = """\
defaults: {sound: false}
rows:
  - id: walk
    image: street.png
    chain: [a woman walks, she turns the corner, she enters a cafe]
"""


@pytest.fixture
def chain_sim(monkeypatch) -> Iterator[Simulator]:
    """A simulator whose videos are wide enough to be first frames (640 px)."""
    config = SimConfig(api_key=SIM_KEY, queue_s=0.05, generation_s=0.1, jitter=0, video_width=640)
    with simulator_in_thread(config) as sim:
        monkeypatch.setenv("NOVITA_BASE_URL", sim.base_url)
        monkeypatch.setenv("NOVITA_API_KEY", SIM_KEY)
        yield sim


def street(path: Path) -> Path:
    """A picture with shapes off-centre, so a push-in moves them: the last frame of a
    video differs from its first, and a link that started from the wrong one shows."""
    picture = Image.new("RGB", (1280, 720), (90, 140, 200))
    draw = ImageDraw.Draw(picture)
    draw.rectangle((100, 420, 560, 700), fill=(200, 60, 40))
    draw.ellipse((900, 80, 1200, 380), fill=(250, 220, 60))
    picture.save(path)
    return path


def first_frame(video: Path) -> Image.Image:
    with av.open(str(video)) as container:
        return next(container.decode(video=0)).to_image()


def difference(a: Image.Image, b: Image.Image) -> float:
    """The mean absolute difference of two pictures, 0 to 255, at ``a``'s size."""
    b = b.convert("RGB").resize(a.size)
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b)).mean) / 3


def rows(run_dir: Path) -> dict[str, sqlite3.Row]:
    with sqlite3.connect(run_dir / "state.sqlite") as db:
        db.row_factory = sqlite3.Row
        return {r["task_key"]: r for r in db.execute("SELECT * FROM tasks ORDER BY position")}


def test_a_chain_of_three_continues_each_video_from_its_last_frame(chain_sim, tmp_path):
    street(tmp_path / "street.png")
    (tmp_path / "m.yaml").write_text(THREE, encoding="utf-8")
    run_dir = tmp_path / "run"
    assert main(["run", str(tmp_path / "m.yaml"), "--out", str(run_dir), *FAST]) == 0
    tasks = rows(run_dir)
    videos = {key: run_dir / row["video_path"] for key, row in tasks.items()}
    for parent, child in (("walk/1", "walk/2"), ("walk/2", "walk/3")):
        end, start = last_frame(videos[parent]), first_frame(videos[child])
        # The joint does not jump (1.5 measured: two encodings apart), and what it
        # matches is the end, not the start (8 to 10: the push-in moved the picture).
        assert difference(end, start) < 3, (parent, child)
        assert difference(first_frame(videos[parent]), start) > 5
        sent = Image.open(io.BytesIO(chain_sim.sent_image(tasks[child]["task_id"])))
        assert difference(end, sent) < 1  # the very frame, lossless
        assert (
            tasks[child]["parent_video"] == hashlib.sha256(videos[parent].read_bytes()).hexdigest()
        )
    assert chain_sim.stats.created_by_prompt == {
        "a woman walks": 1,
        "she turns the corner": 1,
        "she enters a cafe": 1,
    }
    assert [tasks[k]["chain"] for k in tasks] == ["walk", "walk", "walk"]
    ledger = Judging.open(run_dir, read_only=True)  # the review page: what continues what
    try:
        shown = {c["key"]: (c["chain"], c["parent"]) for c in snapshot(ledger, run_dir)["cards"]}
    finally:
        ledger.close()
    assert shown == {
        "walk/1": ("walk", None),
        "walk/2": ("walk", "walk/1"),
        "walk/3": ("walk", "walk/2"),
    }


TWO = """\
defaults: {sound: false}
rows:
  - id: a
    image: street.png
    chain: [a walks, a slips, a stands up]
  - id: b
    image: street.png
    chain: [b walks, b runs, b stops]
"""


def test_a_failed_link_stops_only_its_chain_and_rerun_failed_finishes_it(
    chain_sim, tmp_path, capsys
):
    street(tmp_path / "street.png")
    (tmp_path / "m.yaml").write_text(TWO, encoding="utf-8")
    run_dir = tmp_path / "run"
    chain_sim.config.prompt_fates["slips"] = "fail"
    assert main(["run", str(tmp_path / "m.yaml"), "--out", str(run_dir), *FAST]) == 1
    status = {k: r["status"] for k, r in rows(run_dir).items()}
    assert status == {
        "a/1": "succeeded",
        "a/2": "failed",
        "a/3": "pending",
        "b/1": "succeeded",
        "b/2": "succeeded",
        "b/3": "succeeded",
    }
    assert "a/3" not in {p for p in chain_sim.stats.created_by_prompt if p.startswith("a")}
    capsys.readouterr()
    assert main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "a/3 waits on a/2 (failed)" in out
    assert "would submit" not in out  # resume would not send it: its parent failed
    assert "--failed would resubmit 1 failed task(s)" in out

    chain_sim.config.prompt_fates.clear()
    assert main(["rerun", str(run_dir), "--failed", *FAST]) == 0
    assert {k: r["status"] for k, r in rows(run_dir).items()} == dict.fromkeys(status, "succeeded")
    assert chain_sim.stats.created_by_prompt == {
        "a walks": 1,
        "a slips": 2,
        "a stands up": 1,
        "b walks": 1,
        "b runs": 1,
        "b stops": 1,
    }


def test_a_parent_made_again_makes_its_links_again_never_a_mix(chain_sim, tmp_path, capsys):
    street(tmp_path / "street.png")
    (tmp_path / "m.yaml").write_text(THREE, encoding="utf-8")
    run_dir = tmp_path / "run"
    assert main(["run", str(tmp_path / "m.yaml"), "--out", str(run_dir), *FAST]) == 0
    before = {k: r["parent_video"] for k, r in rows(run_dir).items()}
    chain_sim.config.video_width = 704  # a new take is a new video (the API's never repeat)
    assert main(["rerun", str(run_dir), "--keys", "walk/2", *FAST]) == 0
    assert "1 task(s) queued again" not in capsys.readouterr().out  # walk/3 came with it
    after = rows(run_dir)
    assert chain_sim.stats.created_by_prompt == {
        "a woman walks": 1,
        "she turns the corner": 2,
        "she enters a cafe": 2,
    }
    assert after["walk/2"]["parent_video"] == before["walk/2"]  # its parent did not change
    walk_2 = (run_dir / after["walk/2"]["video_path"]).read_bytes()
    assert after["walk/3"]["parent_video"] == hashlib.sha256(walk_2).hexdigest()
    assert after["walk/3"]["parent_video"] != before["walk/3"]
    assert (run_dir / "videos" / "earlier" / "walk_3.take1.mp4").is_file()


def test_resume_after_a_kill_continues_the_chain_and_pays_for_no_link_twice(chain_sim, tmp_path):
    street(tmp_path / "street.png")
    (tmp_path / "m.yaml").write_text(THREE, encoding="utf-8")
    run_dir = tmp_path / "run"
    chain_sim.hold()  # walk/1 stays queued at the API
    night = runner_process(["run", "m.yaml", "--out", "run", *FAST], chain_sim, tmp_path)
    wait_until(lambda: chain_sim.stats.tasks_created == 1, what="walk/1 made")
    wait_until(lambda: rows(run_dir)["walk/1"]["task_id"] is not None, what="walk/1's id kept")
    night.kill()
    night.wait(10)
    chain_sim.release()
    assert main(["resume", str(run_dir), *FAST]) == 0
    assert chain_sim.stats.created_by_prompt == {
        "a woman walks": 1,
        "she turns the corner": 1,
        "she enters a cafe": 1,
    }
    assert {r["status"] for r in rows(run_dir).values()} == {"succeeded"}


def test_a_chain_that_asks_is_stitched_at_the_end_without_re_encoding(chain_sim, tmp_path, capsys):
    street(tmp_path / "street.png")
    manifest = THREE.replace("defaults: {sound: false}", "defaults: {sound: false, stitch: true}")
    (tmp_path / "m.yaml").write_text(manifest, encoding="utf-8")
    run_dir = tmp_path / "run"
    assert main(["run", str(tmp_path / "m.yaml"), "--out", str(run_dir), *FAST]) == 0
    assert "film films/walk.mp4: 3 clip(s), 15.0 s, joined without re-encoding" in (
        capsys.readouterr().out
    )
    film = run_dir / "films" / "walk.mp4"
    tasks = rows(run_dir)
    clips = [run_dir / tasks[k]["video_path"] for k in ("walk/1", "walk/2", "walk/3")]
    lengths = [film_seconds(clip) for clip in clips]
    assert abs(film_seconds(film) - sum(lengths)) <= 2 / 8  # a frame (8 fps) per joint
    with av.open(str(film)) as container:
        assert container.metadata["title"] == "walk"
        assert "walk/2 (" in container.metadata["comment"]
        assert "she turns the corner" in container.metadata["comment"]
        frames = [f.to_image() for f in container.decode(video=0)]
    per_clip = len(frames) // 3
    assert difference(frames[per_clip - 1], frames[per_clip]) < 3  # no jump at a joint
    story = json.loads((run_dir / "films" / "walk.json").read_text(encoding="utf-8"))
    assert [link["task_id"] for link in story["links"]] == [tasks[k]["task_id"] for k in tasks]
    assert story["reencoded"] is False

    assert main(["stitch", str(run_dir)]) == 0  # the same videos: not made again
    assert "made before from the same videos" in capsys.readouterr().out
    assert main(["stitch", str(run_dir), "--all", "--crossfade", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "films/all.mp4: 3 clip(s)" in out and "re-encoded for a 0.5 s crossfade" in out
    assert abs(film_seconds(run_dir / "films" / "all.mp4") - (sum(lengths) - 1.0)) <= 2 / 8


def test_a_chain_rehearsed_from_python_makes_its_film(quick_rehearsal, tmp_path, monkeypatch):
    """The library's run with the embedded simulator (its videos wide enough for a
    chain): a chain of rows from a list of dicts, stitched at the end."""
    import kling_batch as kb

    monkeypatch.delenv("NOVITA_API_KEY", raising=False)
    picture = street(tmp_path / "street.png")
    rows_ = [{"id": "w", "image": str(picture), "chain": ["one", "two"], "stitch": True}]
    result = kb.run(rows_, tmp_path / "run", simulate=True, canary="off", defaults={"sound": False})
    assert result.ok, result.report[["task_key", "status", "error"]]
    assert list(result.report["chain"]) == ["w", "w"]
    assert list(result.report["parent"].fillna("")) == ["", "w/1"]
    assert abs(film_seconds(tmp_path / "run" / "films" / "w.mp4") - 10.0) <= 2 / 8


def test_a_rejected_parent_made_again_brings_its_links_along(chain_sim, tmp_path, capsys):
    from runner.core.records import Verdict
    from runner.ledger.reviews import Judging

    street(tmp_path / "street.png")
    (tmp_path / "m.yaml").write_text(THREE, encoding="utf-8")
    run_dir = tmp_path / "run"
    assert main(["run", str(tmp_path / "m.yaml"), "--out", str(run_dir), *FAST]) == 0
    ledger = Judging.open(run_dir)
    ledger.judge("walk/1", verdict=Verdict.REJECTED)
    ledger.close()
    chain_sim.config.video_width = 704  # a new take is a new video
    capsys.readouterr()
    assert main(["rerun", str(run_dir), "--rejected", *FAST]) == 0
    out = capsys.readouterr().out
    assert "1 rejected task(s) to make again, 0 with edits, and 2 chain link(s)" in out
    assert set(chain_sim.stats.created_by_prompt.values()) == {2}  # each link once more
    tasks = rows(run_dir)
    for parent, child in (("walk/1", "walk/2"), ("walk/2", "walk/3")):
        video = (run_dir / tasks[parent]["video_path"]).read_bytes()
        assert tasks[child]["parent_video"] == hashlib.sha256(video).hexdigest()


def test_a_chain_behind_the_canary_waits_its_turn_and_finishes(chain_sim, tmp_path):
    """With the canary on (the default), the first task goes alone and its video is
    waited for; the chain's links then go as their parents finish: no deadlock
    between the two waits."""
    street(tmp_path / "street.png")
    manifest = THREE.replace("rows:\n", "rows:\n  - {id: solo, image: street.png, prompt: alone}\n")
    (tmp_path / "m.yaml").write_text(manifest, encoding="utf-8")
    run_dir = tmp_path / "run"
    assert main(["run", str(tmp_path / "m.yaml"), "--out", str(run_dir), *CANARY_FAST]) == 0
    assert chain_sim.stats.tasks_created == 4
    assert {r["status"] for r in rows(run_dir).values()} == {"succeeded"}
