"""Pictures in: what must change for each kind of picture (a table of pure decisions),
then each kind made for real with Pillow and pillow-heif and converted: portrait stays
portrait, transparency lands on the matte, a 16-bit grey stays grey, a ready file is
byte for byte."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from jobs import images
from jobs.pictures import (
    Conversion,
    PictureSettings,
    Source,
    convert,
    plan_conversion,
    register_heif,
    source_of,
)
from runner.cli import main
from tests.conftest import FAST, write_rows

MB = 1_000_000

# source, settings -> (encode, final size, what is done, problem or None)
TABLE: list[tuple[str, Source, PictureSettings, str | None, tuple[int, int], set[str]]] = [
    ("a ready JPEG", Source("JPEG", 1280, 720, MB), PictureSettings(), None, (1280, 720), set()),
    ("a ready PNG", Source("PNG", 720, 1280, MB), PictureSettings(), None, (720, 1280), set()),
    ("a palette PNG", Source("PNG", 800, 600, MB, "P"), PictureSettings(), None, (800, 600), set()),
    (
        "a phone JPEG turned by EXIF",
        Source("JPEG", 4032, 3024, 3 * MB, orientation=6),
        PictureSettings(),
        "JPEG",
        (1536, 2048),
        {"turn"},
    ),
    (
        "an iPhone HEIC",
        Source("HEIF", 4032, 3024, 2 * MB),
        PictureSettings(),
        "JPEG",
        (2048, 1536),
        set(),
    ),
    ("a WebP", Source("WEBP", 1200, 800, MB), PictureSettings(), "JPEG", (1200, 800), set()),
    (
        "a transparent PNG",
        Source("PNG", 800, 800, MB, "RGBA", has_alpha=True),
        PictureSettings(),
        "PNG",
        (800, 800),
        {"matte"},
    ),
    (
        "a 16-bit grey scan",
        Source("PNG", 1000, 800, MB, "I;16"),
        PictureSettings(),
        "PNG",
        (1000, 800),
        {"to_8_bits"},
    ),
    (
        "a CMYK JPEG",
        Source("JPEG", 1000, 800, MB, "CMYK"),
        PictureSettings(),
        "JPEG",
        (1000, 800),
        set(),
    ),
    (
        "a 24 MB camera JPEG",
        Source("JPEG", 6000, 4000, 24 * MB),
        PictureSettings(),
        "JPEG",
        (2048, 1365),
        set(),
    ),
    (
        "a 12 MB PNG within the edge",
        Source("PNG", 2000, 1000, 12 * MB),
        PictureSettings(),
        "JPEG",
        (1826, 913),
        set(),
    ),
    (
        "an animated GIF",
        Source("GIF", 600, 400, MB, "P", frames=12),
        PictureSettings(),
        "JPEG",
        (600, 400),
        {"first_frame"},
    ),
    (
        "a panorama cropped",
        Source("JPEG", 3000, 1000, MB),
        PictureSettings(fit="crop"),
        "JPEG",
        (2048, 820),
        {"crop"},
    ),
    (
        "a panorama padded",
        Source("JPEG", 3000, 1000, MB),
        PictureSettings(fit="pad"),
        "JPEG",
        (2048, 820),
        {"pad", "matte"},
    ),
    (
        "a 4:3 photo cropped to 16:9",
        Source("JPEG", 1600, 1200, MB),
        PictureSettings(fit="crop", ratio=16 / 9),
        "JPEG",
        (1600, 900),
        {"crop"},
    ),
    (
        "a smaller cap",
        Source("JPEG", 1920, 1080, MB),
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
        (Source("JPEG", 640, 280, MB), PictureSettings(), "at least 300 px"),
        (Source("JPEG", 3000, 900, MB), PictureSettings(), "fit: crop or fit: pad"),
        (Source("JPEG", 800, 320, MB), PictureSettings(fit="crop", ratio=9 / 16), "at least 300"),
        (Source("PSD", 1200, 800, MB), PictureSettings(), "not read here"),
    ],
    ids=["too small", "too wide", "too small once cropped", "a format nothing reads"],
)
def test_what_cannot_become_a_first_frame(source, settings, said):
    assert said in str(plan_conversion(source, settings).problem)


def planned(data: bytes, settings: PictureSettings | None = None) -> Conversion:
    register_heif()
    with Image.open(io.BytesIO(data)) as image:
        return plan_conversion(source_of(image, len(data)), settings or PictureSettings())


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
    assert picture.size == (2048, 1536)


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
