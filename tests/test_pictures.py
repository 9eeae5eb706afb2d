"""Pictures in: what must change for each kind of picture (a table of pure decisions),
then each kind made for real with Pillow and pillow-heif and converted: portrait stays
portrait, transparency lands on the matte, a 16-bit grey stays grey, a ready file is
byte for byte."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
from pathlib import Path

import pytest
import yaml
from PIL import Image

from jobs import images
from jobs.picture_files import PictureFile, convert, facts_of, open_picture, register_heif
from jobs.pictures import (
    Conversion,
    PictureFacts,
    PictureSettings,
    auto_ratio,
    plan_conversion,
)
from runner.cli.commands import main
from runner.core.pool import POOL_FROM
from runner.ledger.transitions import RunState
from runner.manifest.files import load
from runner.manifest.plan import Plan, plan
from runner.media import picture_pool
from tests.conftest import FAST, write_rows

MB = 1_000_000

# source, settings -> (encode, final size, what is done, problem or None)
TABLE: list[tuple[str, PictureFacts, PictureSettings, str | None, tuple[int, int], set[str]]] = [
    (
        "a ready JPEG",
        PictureFacts("JPEG", 1280, 720, MB),
        PictureSettings(),
        None,
        (1280, 720),
        set(),
    ),
    (
        "a ready PNG",
        PictureFacts("PNG", 720, 1280, MB),
        PictureSettings(),
        None,
        (720, 1280),
        set(),
    ),
    (
        "a palette PNG",
        PictureFacts("PNG", 800, 600, MB, "P"),
        PictureSettings(),
        None,
        (800, 600),
        set(),
    ),
    (
        "a phone JPEG turned by EXIF",
        PictureFacts("JPEG", 4032, 3024, 3 * MB, orientation=6),
        PictureSettings(),
        "JPEG",
        (1512, 2016),  # libjpeg's half size: decoded small, not resized
        {"turn"},
    ),
    (
        "a JPEG whose DCT sizes miss the cap",
        PictureFacts("JPEG", 4400, 3300, 3 * MB),
        PictureSettings(),
        "JPEG",
        (2048, 1536),  # 2200 is over it, 1100 too far under: decoded at half, resized
        set(),
    ),
    (
        "an iPhone HEIC",
        PictureFacts("HEIF", 4032, 3024, 2 * MB),
        PictureSettings(),
        "JPEG",
        (2048, 1536),
        set(),
    ),
    ("a WebP", PictureFacts("WEBP", 1200, 800, MB), PictureSettings(), "JPEG", (1200, 800), set()),
    (
        "a transparent PNG",
        PictureFacts("PNG", 800, 800, MB, "RGBA", has_alpha=True),
        PictureSettings(),
        "PNG",
        (800, 800),
        {"matte"},
    ),
    (
        "a 16-bit grey scan",
        PictureFacts("PNG", 1000, 800, MB, "I;16"),
        PictureSettings(),
        "PNG",
        (1000, 800),
        {"to_8_bits"},
    ),
    (
        "a CMYK JPEG",
        PictureFacts("JPEG", 1000, 800, MB, "CMYK"),
        PictureSettings(),
        "JPEG",
        (1000, 800),
        set(),
    ),
    (
        "a 24 MB camera JPEG",
        PictureFacts("JPEG", 6000, 4000, 24 * MB),
        PictureSettings(),
        "JPEG",
        (2048, 1365),
        set(),
    ),
    (
        "a 12 MB PNG within the edge",
        PictureFacts("PNG", 2000, 1000, 12 * MB),
        PictureSettings(),
        "JPEG",
        (1826, 913),
        set(),
    ),
    (
        "an animated GIF",
        PictureFacts("GIF", 600, 400, MB, "P", frames=12),
        PictureSettings(),
        "JPEG",
        (600, 400),
        {"first_frame"},
    ),
    (
        "a panorama cropped",
        PictureFacts("JPEG", 3000, 1000, MB),
        PictureSettings(fit="crop"),
        "JPEG",
        (2048, 820),
        {"crop"},
    ),
    (
        "a panorama padded",
        PictureFacts("JPEG", 3000, 1000, MB),
        PictureSettings(fit="pad"),
        "JPEG",
        (2048, 820),
        {"pad", "matte"},
    ),
    (
        "a 4:3 photo cropped to 16:9",
        PictureFacts("JPEG", 1600, 1200, MB),
        PictureSettings(fit="crop", ratio=16 / 9),
        "JPEG",
        (1600, 900),
        {"crop"},
    ),
    (
        "a smaller cap",
        PictureFacts("JPEG", 1920, 1080, MB),
        PictureSettings(max_edge=1280),
        "JPEG",
        (1280, 720),
        set(),
    ),
]


def done(conversion: Conversion) -> set[str]:
    return {
        name
        for name, on in [
            ("turn", conversion.turn),
            ("first_frame", conversion.first_frame),
            ("matte", conversion.matte is not None),
            ("to_8_bits", conversion.to_8_bits),
            ("crop", conversion.crop_to is not None),
            ("pad", conversion.pad_to is not None),
        ]
        if on
    }


@pytest.mark.parametrize(
    ("source", "settings", "encode", "size", "steps"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_what_must_change(source, settings, encode, size, steps):
    conversion = plan_conversion(source, settings)
    assert conversion.problem is None
    assert (conversion.encode, conversion.size, done(conversion)) == (encode, size, steps)
    assert conversion.as_is == (encode is None)


@pytest.mark.parametrize(
    ("source", "settings", "said"),
    [
        (PictureFacts("JPEG", 640, 280, MB), PictureSettings(), "at least 300 px"),
        (PictureFacts("JPEG", 3000, 900, MB), PictureSettings(), "fit: crop or fit: pad"),
        (
            PictureFacts("JPEG", 800, 320, MB),
            PictureSettings(fit="crop", ratio=9 / 16),
            "at least 300",
        ),
        (PictureFacts("PSD", 1200, 800, MB), PictureSettings(), "not read here"),
    ],
    ids=["too small", "too wide", "too small once cropped", "a format nothing reads"],
)
def test_what_cannot_become_a_first_frame(source, settings, said):
    assert said in str(plan_conversion(source, settings).problem)


def planned(data: bytes, settings: PictureSettings | None = None) -> Conversion:
    register_heif()
    with Image.open(io.BytesIO(data)) as image:
        return plan_conversion(facts_of(image, len(data)), settings or PictureSettings())


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def sent(data: bytes, settings: PictureSettings | None = None) -> Image.Image:
    """What the API would get, checked the way it checks."""
    result = convert(data, planned(data, settings))
    facts, problems = images.check_image_bytes(result)
    assert problems == [] and facts is not None
    return Image.open(io.BytesIO(result))


def test_a_ready_jpeg_is_sent_byte_for_byte():
    data = encoded(Image.new("RGB", (1280, 720), (10, 120, 200)), "JPEG", quality=80)
    assert planned(data).as_is
    assert convert(data, planned(data)) is data


def test_a_phone_portrait_turned_by_exif_is_sent_as_a_portrait():
    stored = Image.new("RGB", (800, 600), (200, 30, 30))
    stored.paste((30, 200, 30), (0, 0, 100, 600))  # a green band at the stored left
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90 degrees clockwise to show"
    picture = sent(encoded(stored, "JPEG", exif=exif.tobytes()))
    assert picture.size == (600, 800)  # portrait, as the phone showed it
    assert picture.getexif().get(0x0112) is None  # no tag left to turn it twice
    red, green, _ = picture.convert("RGB").getpixel((300, 20))  # the band is now on top
    assert green > 150 and red < 80


def test_transparency_lands_on_a_white_matte_or_the_one_asked():
    picture = Image.new("RGBA", (600, 400), (0, 0, 0, 0))  # transparent black pixels
    picture.paste((255, 0, 0, 255), (200, 100, 400, 300))
    data = encoded(picture, "PNG")
    assert sent(data).convert("RGB").getpixel((10, 10)) == (255, 255, 255)
    black = sent(data, PictureSettings(matte=(0, 0, 0)))
    assert black.convert("RGB").getpixel((10, 10)) == (0, 0, 0)
    assert sent(data).convert("RGB").getpixel((300, 200)) == (255, 0, 0)


def test_a_16_bit_grey_scan_stays_grey():
    grey = Image.new("I;16", (600, 400), 32896)  # mid-grey in 16 bits
    picture = sent(encoded(grey, "PNG"))
    assert picture.mode == "L" and picture.getpixel((10, 10)) == 128  # not clipped to 255


def test_a_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (600, 400), (0, 255, 255, 0))  # red in ink
    picture = sent(encoded(cmyk, "JPEG"))
    red, green, blue = picture.convert("RGB").getpixel((10, 10))
    assert picture.mode == "RGB" and red > 200 and green < 60 and blue < 60


@pytest.mark.parametrize("fmt", ["HEIF", "WEBP", "AVIF", "TIFF", "BMP"])
def test_pictures_in_other_formats_become_jpegs(fmt):
    register_heif()
    data = encoded(Image.new("RGB", (900, 600), (40, 160, 90)), fmt)
    picture = sent(data)
    assert picture.format == "JPEG" and picture.size == (900, 600)
    red, green, _ = picture.getpixel((450, 300))
    assert abs(green - 160) < 12 and red < 60


def test_an_animation_sends_its_first_frame():
    frames = [Image.new("RGB", (600, 400), colour) for colour in ((250, 0, 0), (0, 0, 250))]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    conversion = planned(data)
    assert conversion.first_frame and "first of 2 frames" in conversion.describe()
    red, _, blue = sent(data).convert("RGB").getpixel((10, 10))
    assert red > 200 and blue < 60


def test_a_big_camera_file_is_shrunk_to_the_cap_with_its_shape():
    noisy = Image.effect_noise((4032, 3024), 80).convert("RGB")
    picture = sent(encoded(noisy, "JPEG", quality=95))
    assert picture.size == (2016, 1512)  # libjpeg's half size, a little under the cap
    noisy = Image.effect_noise((4400, 3300), 80).convert("RGB")
    assert sent(encoded(noisy, "JPEG", quality=95)).size == (2048, 1536)


def test_crop_and_pad_make_the_shape_asked():
    wide = encoded(Image.new("RGB", (1500, 500), (90, 90, 200)), "JPEG")
    assert sent(wide, PictureSettings(fit="crop")).size == (1250, 500)
    padded = sent(wide, PictureSettings(fit="pad"))
    assert padded.size == (1500, 600)
    assert padded.convert("RGB").getpixel((750, 5)) == (255, 255, 255)  # the matte's bar


def test_a_ready_file_reaches_the_api_byte_for_byte(tmp_path, threaded_sim):
    picture = Image.effect_noise((640, 360), 50).convert("RGB")
    picture.save(tmp_path / "frame.png")
    manifest = write_rows(tmp_path / "m.yaml", 1)
    assert main(["run", str(manifest), "--out", str(tmp_path / "run"), *FAST]) == 0
    (task_id,) = threaded_sim.tasks
    assert threaded_sim.sent_image(task_id) == (tmp_path / "frame.png").read_bytes()


# --- through validate and a run, against the simulator's checks -----------------------


def people_pictures(folder: Path) -> dict[str, str]:
    """The folder of the issue: each kind of picture people have, made for real."""
    register_heif()
    folder.mkdir(parents=True, exist_ok=True)
    turned = Image.Exif()
    turned[0x0112] = 6
    stored = Image.new("RGB", (800, 600), (200, 30, 30))
    stored.paste((30, 200, 30), (0, 0, 100, 600))  # green at the stored left: on top, shown
    (folder / "phone.jpg").write_bytes(encoded(stored, "JPEG", exif=turned.tobytes()))
    Image.new("RGB", (640, 900), (40, 160, 90)).save(folder / "iphone.heic")
    Image.new("RGB", (900, 600), (40, 160, 90)).save(folder / "web.webp")
    logo = Image.new("RGBA", (600, 400), (0, 0, 0, 0))
    logo.paste((255, 0, 0, 255), (200, 100, 400, 300))
    logo.save(folder / "logo.png")
    Image.new("I;16", (600, 400), 32896).save(folder / "scan.png")
    Image.new("CMYK", (600, 400), (0, 255, 255, 0)).save(folder / "print.jpg")
    Image.new("RGB", (700, 500), (90, 90, 200)).save(folder / "flatbed.tif")
    Image.effect_noise((640, 360), 50).convert("RGB").save(folder / "ready.png")
    return {path.stem: str(path) for path in folder.iterdir()}


def sent_by_row(run_dir: Path, sim) -> dict[str, Image.Image]:
    state = RunState.open(run_dir, read_only=True)
    try:
        ids = {r.row_id: r.task_id for r in state.tasks()}
    finally:
        state.close()
    return {row: Image.open(io.BytesIO(sim.sent_image(task_id))) for row, task_id in ids.items()}


def test_every_kind_of_picture_reaches_the_api_as_it_takes_it(tmp_path, threaded_sim, capsys):
    people_pictures(tmp_path / "shots")
    manifest = tmp_path / "m.yaml"
    manifest.write_text("defaults: {sound: false}\nrows:\n  - {image: shots, prompt: '{name}'}\n")
    assert main(["validate", str(manifest)]) == 0
    said = capsys.readouterr().out
    assert "7 picture(s) converted before sending" in said
    assert "phone.jpg: JPEG 800x600 -> JPEG 600x800, turned by its EXIF" in said
    assert "logo.png: PNG 600x400 -> PNG 600x400, transparency on #ffffff" in said
    assert "by kind: 1 16 bits to 8, 1 CMYK to RGB, 1 from HEIF, 1 from TIFF, 1 from WEBP" in said
    assert "ready.png" not in said  # sent as it is

    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    assert (
        "phone.jpg: JPEG 800x600 -> JPEG 600x800, turned by its EXIF, " in capsys.readouterr().out
    )
    sent = sent_by_row(run_dir, threaded_sim)
    assert sent["phone"].size == (600, 800)  # portrait, as the phone showed it
    red, green, _ = sent["phone"].convert("RGB").getpixel((300, 20))
    assert green > 150 and red < 80  # and turned the right way
    assert sent["iphone"].format == "JPEG" and sent["iphone"].size == (640, 900)
    assert sent["logo"].convert("RGB").getpixel((10, 10)) == (255, 255, 255)  # white matte
    assert sent["scan"].mode == "L" and sent["scan"].getpixel((10, 10)) == 128  # still grey
    assert sent["print"].mode == "RGB" and sent["print"].getpixel((10, 10))[0] > 200
    assert sent["web"].format == sent["flatbed"].format == "JPEG"
    ready = (tmp_path / "shots" / "ready.png").read_bytes()
    assert threaded_sim.sent_image(_task_id(run_dir, "ready")) == ready  # byte for byte
    assert len(list((run_dir / "images").iterdir())) == 7
    report = (run_dir / "report.csv").read_text(encoding="utf-8-sig")
    assert "shots/iphone.heic" in report and "/images/" in report  # the original and as sent
    story = json.loads((run_dir / "videos" / "iphone_1.json").read_text())
    (done,) = story["conversions"]
    assert done["source"].endswith("iphone.heic") and done["sent"].startswith("images/")
    assert done["done"] == "HEIF 640x900 -> JPEG 640x900"


def _task_id(run_dir: Path, row_id: str) -> str:
    state = RunState.open(run_dir, read_only=True)
    try:
        return next(r.task_id for r in state.tasks() if r.row_id == row_id)
    finally:
        state.close()


# --- what a row asks of its pictures ---------------------------------------------------


@pytest.mark.parametrize(
    ("size", "chosen"),
    [
        ((1600, 1200), "16:9"),  # 4:3: exactly between 1:1 and 16:9, keeps its way up
        ((1200, 1600), "9:16"),  # 3:4: the same tie, portrait
        ((1000, 1000), "1:1"),
        ((1500, 1000), "16:9"),  # 3:2
        ((1250, 1000), "1:1"),  # 5:4
        ((2100, 900), "16:9"),  # 21:9
        ((1000, 1500), "9:16"),  # 2:3
    ],
)
def test_aspect_ratio_auto_picks_the_nearest_and_breaks_the_4_3_tie_by_orientation(size, chosen):
    assert auto_ratio(*size, ("16:9", "9:16", "1:1")) == chosen


def plan_of(tmp_path: Path, rows: str, defaults: str = "{sound: false}") -> Plan:
    path = tmp_path / "m.yaml"
    path.write_text(f"defaults: {defaults}\nrows:\n{rows}", encoding="utf-8")
    return plan(load(path))


def test_auto_and_fit_make_the_picture_the_shape_of_the_video(tmp_path):
    Image.new("RGB", (1200, 1600), (9, 9, 9)).save(tmp_path / "tall.jpg")  # 3:4
    result = plan_of(tmp_path, "  - {id: t, image: tall.jpg, prompt: p, aspect_ratio: auto}\n")
    (task,) = result.tasks
    assert task.request.aspect_ratio == "9:16" and not task.pictures  # sent as it is
    result = plan_of(
        tmp_path, "  - {id: t, image: tall.jpg, prompt: p, aspect_ratio: auto, fit: crop}\n"
    )
    (task,) = result.tasks
    (picture,) = task.pictures
    assert task.request.aspect_ratio == "9:16" and picture.conversion.size == (900, 1600)
    sent = json.loads(task.request_json())
    assert not {"fit", "matte", "max_edge"} & set(sent)  # never in the request
    assert "fit" not in task.request.body({"image": "b64"})


def test_picture_settings_are_checked_like_any_setting(tmp_path):
    Image.new("RGB", (800, 600)).save(tmp_path / "a.jpg")
    result = plan_of(
        tmp_path,
        "  - {id: a, image: a.jpg, prompt: p, matte: blurple, fit: stretch, max_edge: 100}\n"
        "  - {id: u, image: 'https://example.com/a.jpg', prompt: p, aspect_ratio: auto}\n"
        "  - {id: t, model: kling-o1-t2v, prompt: p, aspect_ratio: auto}\n",
        defaults="{sound: false, mate: '#000'}",
    )
    said = "\n".join(str(p) for p in result.problems)
    assert "row 'a': matte = 'blurple': must be a colour" in said
    assert "row 'a': fit = 'stretch': must be one of crop, pad, none" in said
    assert "row 'a': max_edge = 100: must be a whole number of px, 300 to 8192" in said
    assert "row 'u': aspect_ratio = 'auto': follows the picture; a URL is not read here" in said
    assert "row 't': aspect_ratio = 'auto': follows the picture: kling-o1-t2v takes none" in said
    assert "mate: is a default (defaults: or --set) that no model of this manifest takes " in said
    assert "(did you mean 'matte'?)" in said


def test_a_converted_fingerprint_is_the_source_and_the_steps(tmp_path):
    logo = Image.new("RGBA", (600, 400), (0, 0, 0, 0))
    logo.save(tmp_path / "logo.png")
    Image.new("RGB", (640, 360), (1, 2, 3)).save(tmp_path / "ready.png")

    def fingerprint(row: str) -> str:
        (task,) = plan_of(tmp_path, f"  - {{id: a, prompt: p, {row}}}\n").tasks
        return task.fingerprint

    white = fingerprint("image: logo.png")
    assert fingerprint("image: logo.png, matte: '#000000'") != white  # another picture
    assert fingerprint("image: logo.png, matte: white") == white  # the same steps
    # A ready file counts as its own bytes, whatever a row asks of pictures (golden value:
    # what every run folder before conversions holds).
    ready = fingerprint("image: ready.png")
    assert fingerprint("image: ready.png, matte: '#000000', fit: crop") == ready
    digest = hashlib.sha256((tmp_path / "ready.png").read_bytes()).hexdigest()
    (task,) = plan_of(tmp_path, "  - {id: a, prompt: p, image: ready.png}\n").tasks
    assert ready == task.request.fingerprint({"image": digest})


def test_an_animation_warns_that_only_its_first_frame_goes(tmp_path):
    frames = [Image.new("RGB", (600, 400), c) for c in ((250, 0, 0), (0, 0, 250), (0, 250, 0))]
    frames[0].save(tmp_path / "loop.gif", save_all=True, append_images=frames[1:])
    result = plan_of(tmp_path, "  - {id: g, image: loop.gif, prompt: p}\n")
    assert result.ok
    assert "loop.gif': has 3 frames: only the first is sent" in str(result.warnings[0])


def test_a_second_validate_reads_no_picture_again(tmp_path, monkeypatch):
    monkeypatch.setenv("KLING_BATCH_CACHE", str(tmp_path / "cache"))
    for name in ("a.jpg", "b.png"):
        Image.new("RGB", (640, 360), (5, 5, 5)).save(tmp_path / name)
    read: list[Path] = []

    def counted(path: Path):
        read.append(path)
        return open_picture(path)

    monkeypatch.setattr(picture_pool, "open_picture", counted)
    rows = "  - {id: a, image: a.jpg, prompt: p}\n  - {id: b, image: b.png, prompt: p}\n"
    assert plan_of(tmp_path, rows).ok and len(read) == 2
    assert plan_of(tmp_path, rows).ok and len(read) == 2  # nothing read the second time
    Image.new("RGB", (640, 360), (9, 9, 9)).save(tmp_path / "a.jpg")  # edited
    assert plan_of(tmp_path, rows).ok and read[2:] == [(tmp_path / "a.jpg").resolve()]


def test_many_pictures_are_read_on_every_core_with_the_same_answers(tmp_path, monkeypatch):
    monkeypatch.setenv("KLING_BATCH_CACHE", str(tmp_path / "cache"))
    shots = tmp_path / "shots"
    shots.mkdir()
    for index in range(POOL_FROM + 4):
        size = (640, 360) if index % 5 else (640, 200)  # every fifth too small
        Image.new("RGB", size, (index, 9, 9)).save(shots / f"s{index:02d}.png")
    found = picture_pool.open_pictures(sorted(shots.iterdir()))
    assert found == {path: open_picture(path) for path in sorted(shots.iterdir())}
    result = plan_of(tmp_path, "  - {image: shots, prompt: p}\n")
    assert len(result.tasks) == 16 and len(result.problems) == 4


def test_a_resume_makes_a_deleted_conversion_again(tmp_path, threaded_sim):
    logo = Image.new("RGBA", (600, 400), (0, 0, 0, 0))
    logo.save(tmp_path / "logo.png")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "defaults: {sound: false}\nrows:\n  - {id: l, image: logo.png, prompt: p, matte: black}\n"
    )
    run_dir = tmp_path / "run"
    # Converted before the question; declined (no terminal, no --yes): nothing is sent.
    assert main(["run", str(manifest), "--out", str(run_dir)]) == 2
    (made,) = (run_dir / "images").iterdir()
    made.unlink()
    assert main(["resume", str(run_dir), *FAST]) == 0
    assert made.is_file()
    sent = sent_by_row(run_dir, threaded_sim)["l"]
    assert sent.convert("RGB").getpixel((10, 10)) == (0, 0, 0)


def test_failed_rows_keep_the_original_picture_and_what_the_row_asked(tmp_path, threaded_sim):
    Image.new("RGB", (1500, 500), (90, 90, 200)).save(tmp_path / "pano.jpg")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "defaults: {sound: false}\n"
        "rows:\n  - {id: p, image: pano.jpg, prompt: p, fit: pad, matte: '#000000'}\n"
    )
    threaded_sim.script_fates("fail")
    assert main(["run", str(manifest), "--out", str(tmp_path / "run"), *FAST]) == 1
    failed = yaml.safe_load((tmp_path / "run" / "failed.yaml").read_text())
    (row,) = failed["rows"]
    assert row["image"] == str((tmp_path / "pano.jpg").resolve())
    assert (row["fit"], row["matte"]) == ("pad", "#000000")
    assert main(["validate", str(tmp_path / "run" / "failed.yaml")]) == 0


def test_an_end_image_is_converted_like_a_first_frame(tmp_path, threaded_sim):
    register_heif()
    Image.new("RGB", (900, 600), (40, 160, 90)).save(tmp_path / "start.webp")
    Image.new("RGB", (900, 600), (160, 40, 90)).save(tmp_path / "end.heic")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "rows:\n  - {id: e, model: kling-o1-i2v, image: start.webp, end_image: end.heic, "
        "prompt: p}\n"
    )
    run_dir = tmp_path / "run"
    # The simulator checks every image as the API does: a HEIC sent as it is would fail.
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    fields = sorted(p.field for p in plan(load(manifest)).conversions)
    assert fields == ["end_image", "image"] and len(list((run_dir / "images").iterdir())) == 2


def test_a_task_sent_before_conversions_is_not_a_changed_request(tmp_path, threaded_sim):
    """A kling-batch from before conversions sent an EXIF-turned JPEG as it was, with
    the file's own sha256 in its fingerprint: running that folder's manifest again must
    not refuse the paid task as changed (nor send it again)."""
    turned = Image.Exif()
    turned[0x0112] = 6
    (tmp_path / "phone.jpg").write_bytes(
        encoded(Image.new("RGB", (800, 600), (9, 99, 9)), "JPEG", exif=turned.tobytes())
    )
    manifest = write_rows(tmp_path / "m.yaml", 1, image="phone.jpg")
    run_dir = tmp_path / "run"
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    (task,) = plan(load(manifest)).tasks
    with sqlite3.connect(run_dir / "state.sqlite") as db:  # as the older version left it
        db.execute("UPDATE tasks SET fingerprint = ?, pictures = NULL", (task.legacy_fingerprint,))
    db.close()
    assert main(["run", str(manifest), "--out", str(run_dir), *FAST]) == 0
    assert len(threaded_sim.tasks) == 1  # nothing sent again


def test_a_conversion_and_a_reading_kept_under_the_old_name_read_back() -> None:
    """Ledgers and picture caches written before ``source`` became ``facts`` still read."""
    facts = PictureFacts("HEIF", 4032, 3024, 2 * MB, orientation=6)
    conversion = plan_conversion(facts)
    old = conversion.to_dict()
    old["source"] = old.pop("facts")
    assert Conversion.from_dict(old) == conversion
    assert Conversion.from_dict(conversion.to_dict()) == conversion
    reading = PictureFile("a.heic", "ab" * 32, facts)
    kept = json.loads(reading.to_json())
    kept["source"] = kept.pop("facts")
    assert PictureFile.from_json(json.dumps(kept)) == reading
    assert PictureFile.from_json(reading.to_json()) == reading
