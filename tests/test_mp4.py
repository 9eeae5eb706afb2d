"""The check that decides whether a downloaded video counts (``runner.media.mp4``), on real
H.264 MP4s made here with PyAV, faststart and not, cut at many places; then what the
runner does with a video the simulator cuts short or makes the wrong length."""

from __future__ import annotations

import csv
import struct
from pathlib import Path

import av
import pytest
from PIL import Image

from runner.cli.commands import main
from runner.engine import fetch
from runner.media.mp4 import Mp4Check, check_mp4
from tests.conftest import FAST, draw_image, write_rows


def make_mp4(
    path: Path, seconds: float, *, faststart: bool, fps: int = 8, audio: bool = False
) -> Path:
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=options) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i in range(round(seconds * fps)):
            frame = av.VideoFrame.from_image(Image.new("RGB", (160, 96), (i * 9 % 255, 80, 160)))
            out.mux(stream.encode(frame))
        out.mux(stream.encode())  # flush: without it the last frames are lost
    return path


def audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=8000)
        stream.layout = "mono"
        for _ in range(10):
            frame = av.AudioFrame(format="fltp", layout="mono", samples=1024)
            frame.planes[0].update(bytes(4096))
            frame.sample_rate = 8000
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def boxes(data: bytes) -> list[tuple[bytes, int, int]]:
    found, at = [], 0
    while at < len(data):
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        found.append((kind, at, size))
        at += size
    return found


@pytest.fixture(scope="module", params=[True, False], ids=["faststart", "moov-last"])
def real(request, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mp4")
    return make_mp4(folder / "clip.mp4", 5, faststart=request.param)


def test_a_whole_file_is_whole_and_as_long_as_it_is(real):
    check = check_mp4(real, expected_s=5)
    assert check.whole and check.problem is None
    assert check.duration_s == pytest.approx(5, abs=0.2)


def cuts(data: bytes) -> dict[str, int]:
    """Places to cut: inside each box (just after its header, and in its middle)."""
    found = {}
    for kind, at, size in boxes(data):
        name = kind.decode()
        found[f"{name} header"] = at + 4
        found[f"inside {name}"] = at + size // 2
    found["last byte"] = len(data) - 1
    return {k: v for k, v in found.items() if 0 < v < len(data)}


def test_a_cut_anywhere_is_not_whole(real, tmp_path):
    data = real.read_bytes()
    places = cuts(data)
    assert {"inside moov", "inside mdat", "last byte"} <= set(places)
    for place, length in places.items():
        cut = tmp_path / "cut.mp4"
        cut.write_bytes(data[:length])
        check = check_mp4(cut, expected_s=5)
        assert not check.whole, place
        assert check.problem, place


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"", "not an MP4"),
        (b"<html><body>502 Bad Gateway</body></html>", "does not start with an ftyp"),
        (b'{"code": 403, "reason": "EXPIRED"}', "does not start with an ftyp"),
        (struct.pack(">I4s", 16, b"ftyp") + bytes(8) + bytes(64), "no box at byte 16"),
    ],
)
def test_what_is_not_a_video_is_not_whole(tmp_path, content, said):
    path = tmp_path / "v.mp4"
    path.write_bytes(content)
    check = check_mp4(path)
    assert not check.whole and said in (check.problem or "")


def test_an_mp4_without_a_video_track_is_not_a_video(tmp_path):
    check = check_mp4(audio_only(tmp_path / "a.mp4"))
    assert not check.whole and check.problem == "damaged: no video track"


def test_a_duration_that_differs_is_kept_but_named(real):
    check = check_mp4(real, expected_s=10)
    assert check.whole
    assert check.problem is not None and "10s was asked" in check.problem
    assert check_mp4(real, expected_s=5.4).problem is None  # within half a second


def test_padding_in_a_free_box_and_64_bit_sizes_are_read(real, tmp_path):
    data = real.read_bytes()
    padded = tmp_path / "padded.mp4"
    padded.write_bytes(data + struct.pack(">I4s", 1000, b"free") + bytes(992))
    assert check_mp4(padded, 5).whole
    large = tmp_path / "large.mp4"  # the last box with a 64-bit size
    kind, at, size = boxes(data)[-1]
    body = data[at + 8 : at + size]
    large.write_bytes(data[:at] + struct.pack(">I4sQ", 1, kind, size + 8) + body)
    assert check_mp4(large, 5).whole


# --- what the runner does with it -------------------------------------------------------


@pytest.fixture
def quick_refetch(monkeypatch) -> None:
    """The download retry policy as it is, its waits cut from seconds to milliseconds."""
    real = fetch.after_download_error
    monkeypatch.setattr(
        fetch, "after_download_error", lambda retries, **kw: real(retries, **{**kw, "base_s": 1e-3})
    )


def report_rows(run_dir: Path) -> dict[str, dict[str, str]]:
    with (run_dir / "report.csv").open(encoding="utf-8") as handle:
        return {row["task_key"]: row for row in csv.DictReader(handle)}


def test_a_video_cut_on_its_first_download_is_fetched_again_and_kept_whole(tmp_path, threaded_sim):
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "m.yaml", 3)
    threaded_sim.script("media", "cut", "cut")
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    for row in report_rows(run_dir).values():
        assert row["video_problem"] == "" and float(row["video_s"]) == 5
        assert check_mp4(run_dir / row["video_path"], 5).whole
    assert threaded_sim.stats.faults["media:cut"] == 2
    assert threaded_sim.stats.tasks_created == 3
    assert not list((run_dir / "videos").glob("*.part"))


def test_a_video_that_keeps_arriving_cut_is_never_kept_and_resume_fetches_it(
    tmp_path, threaded_sim, capsys, quick_refetch
):
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "m.yaml", 1)
    threaded_sim.script("media", *["cut"] * 5)  # every try of this run
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 1
    out = capsys.readouterr().out
    assert "1 video(s) not downloaded yet" in out
    row = report_rows(run_dir)["r0/1"]
    assert row["video_path"] == "" and row["status"] == "succeeded"
    assert row["video_problem"].startswith("video cut short")
    assert list((run_dir / "videos").glob("*.mp4")) == []
    assert main(["status", str(run_dir)]) == 0
    assert "download 1 video(s)" in capsys.readouterr().out

    assert main(["resume", str(run_dir), *FAST]) == 0
    row = report_rows(run_dir)["r0/1"]
    assert row["video_problem"] == "" and check_mp4(run_dir / row["video_path"], 5).whole
    assert threaded_sim.stats.tasks_created == 1


def test_a_video_of_the_wrong_duration_is_kept_and_named(tmp_path, threaded_sim, capsys):
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "m.yaml", 2)
    threaded_sim.config.video_duration_s = 1.0
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    captured = capsys.readouterr()
    assert "2 video(s) are not as asked" in captured.out
    for row in report_rows(run_dir).values():
        assert row["video_path"] and float(row["video_s"]) == 1
        assert row["video_problem"] == "lasts 1s, 5s was asked"
    assert main(["status", str(run_dir), "--json"]) == 0
    assert '"video_problems": 2' in capsys.readouterr().out


def test_the_simulator_serves_a_real_video_made_from_the_submitted_image(tmp_path, threaded_sim):
    Image.new("RGB", (360, 640), (20, 200, 40)).save(tmp_path / "frame.png")  # portrait, green
    manifest = write_rows(tmp_path / "m.yaml", 1)
    manifest.write_text(manifest.read_text().replace("prompt 0'", "prompt 0', duration: 10"))
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    video = run_dir / "videos" / "r0_1.mp4"
    assert check_mp4(video, 10) == Mp4Check(True, 10.0)
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.height > stream.width  # portrait stays portrait
        first = next(container.decode(stream)).to_image().convert("RGB")
    red, green, blue = first.resize((1, 1)).getpixel((0, 0))
    assert green > 150 and red < 80 and blue < 80  # the submitted picture, not a sample


def test_the_report_shows_each_video_with_its_poster(tmp_path, threaded_sim):
    draw_image(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "m.yaml", 2)
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    rows = report_rows(run_dir)
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    for row in rows.values():
        assert row["poster_path"] == row["video_path"].removesuffix(".mp4") + ".jpg"
        with Image.open(run_dir / row["poster_path"]) as poster:
            assert poster.size == (320, 180)  # the video's own frame, 16:9 as the image
        assert f'poster="{row["poster_path"]}"' in page
