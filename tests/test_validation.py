"""Every API limit is checked before anything is sent, and each problem names file,
row, field and rule. Also: the request body, the fingerprint and the price table."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from jobs import DEFAULT_MODEL, model_named
from jobs.images import IMAGE_MAX_BYTES, image_payload
from jobs.picture_files import open_picture
from jobs.pictures import PICTURE_MAX_BYTES
from runner.manifest.files import load
from runner.manifest.plan import STEM_MAX_BYTES, Plan, plan, video_file_name
from tests.conftest import draw_image

SEED = model_named(DEFAULT_MODEL)


def plan_rows(tmp_path: Path, rows: str, defaults: str = "") -> Plan:
    path = tmp_path / "batch.yaml"
    path.write_text(
        (f"defaults: {defaults}\n" if defaults else "") + "rows:\n" + rows, encoding="utf-8"
    )
    return plan(load(path))


def only_problem(result: Plan) -> str:
    assert len(result.problems) == 1, [str(p) for p in result.problems]
    return str(result.problems[0])


@pytest.fixture
def ok_image(tmp_path: Path) -> Path:
    return draw_image(tmp_path / "ok.png", 640, 360)


def test_a_good_row_plans_one_priced_task(tmp_path, ok_image):
    result = plan_rows(tmp_path, "  - {id: a, image: ok.png, prompt: hello, sound: false}\n")
    assert result.ok
    [task] = result.tasks
    assert task.request.image == str(ok_image.resolve())
    assert task.request.duration == 5 and task.request.sound is False
    assert task.est_cost_usd == pytest.approx(5 * 0.07)
    assert task.source == f"{tmp_path / 'batch.yaml'}:2"


@pytest.mark.parametrize(
    ("row", "field", "rule"),
    [
        ("{id: r, image: ok.png, prompt: p, duration: 7}", "duration = 7", "must be one of 5, 10"),
        (
            "{id: r, image: ok.png, prompt: p, cfg_scale: 1.5}",
            "cfg_scale = 1.5",
            "between 0.0 and 1.0",
        ),
        ("{id: r, image: ok.png, prompt: p, cfg_scale: high}", "cfg_scale", "must be a number"),
        (
            "{id: r, image: ok.png, prompt: p, voice_list: [a, b, c]}",
            "voice_list",
            "at most 2 voices",
        ),
        (
            "{id: r, image: ok.png, prompt: p, aspect_ratio: '4:3'}",
            "aspect_ratio = '4:3'",
            "16:9, 9:16, 1:1",
        ),
        ("{id: r, image: ok.png, prompt: p, sound: maybe}", "sound", "true or false"),
        (
            "{id: r, image: ok.png, prompt: p, durations: 10}",
            "durations",
            "did you mean 'duration'",
        ),
        ("{id: r, image: ok.png}", "prompt", "is required"),
        ("{id: r, prompt: p}", "image", "is required"),
        ("{id: r, image: ok.png, prompt: p, duration: true}", "duration", "whole number"),
    ],
)
def test_each_field_rule_names_file_row_field_and_rule(tmp_path, ok_image, row, field, rule):
    message = only_problem(plan_rows(tmp_path, f"  - {row}\n"))
    assert message.startswith(f"{tmp_path / 'batch.yaml'}:2: row 'r': {field}")
    assert rule in message


@pytest.mark.parametrize("name", ["prompt", "negative_prompt"])
def test_prompts_longer_than_2500_characters(tmp_path, ok_image, name):
    long = "x" * 2501
    prompt = "" if name == "prompt" else "prompt: p, "  # one key once: YAML keeps the last
    message = only_problem(
        plan_rows(tmp_path, f"  - {{id: r, image: ok.png, {prompt}{name}: {long}}}\n")
    )
    assert f"{name} = " in message and "2501 characters; at most 2500" in message
    assert plan_rows(tmp_path, f"  - {{id: r, image: ok.png, {prompt}{name}: {'y' * 2500}}}\n").ok


@pytest.mark.parametrize(
    ("size", "ok"),
    [
        ((300, 300), True),
        ((299, 400), False),
        ((750, 300), True),  # exactly 2.5:1
        ((300, 750), True),  # exactly 1:2.5
        ((760, 300), False),
        ((300, 760), False),
    ],
)
def test_image_size_and_aspect_edges(tmp_path, size, ok):
    draw_image(tmp_path / "img.png", *size)
    result = plan_rows(tmp_path, "  - {id: r, image: img.png, prompt: p}\n")
    assert result.ok is ok, [str(p) for p in result.problems]
    if not ok:
        assert "row 'r': image" in only_problem(result)


def test_missing_unreadable_and_url_images_and_other_formats_converted(tmp_path):
    (tmp_path / "fake.png").write_bytes(b"not an image at all")
    draw_image(tmp_path / "pic.bmp", 640, 360)
    draw_image(tmp_path / "sneaky.png", 640, 360, fmt="GIF")
    result = plan_rows(
        tmp_path,
        "  - {id: gone, image: nowhere.png, prompt: p}\n"
        "  - {id: fake, image: fake.png, prompt: p}\n"
        "  - {id: bmp, image: pic.bmp, prompt: p}\n"
        "  - {id: gif, image: sneaky.png, prompt: p}\n"
        "  - {id: url, image: 'https://example.com/a.webp', prompt: p}\n",
    )
    by_row = {p.row: p.rule for p in result.problems}
    assert by_row == {
        "gone": "file not found",
        "fake": "is not a picture this reads (JPEG, PNG, HEIC, WebP, AVIF, TIFF, BMP, GIF)",
        "url": "must be a PNG or JPEG: a URL is sent as it is, so it cannot be converted "
        "here (download it and name the file instead)",
    }
    # A BMP, and a GIF named .png, are converted, each said as what it is.
    said = {Path(p.original).name: p.conversion.describe() for p in result.conversions}
    assert said == {
        "pic.bmp": "BMP 640x360 -> JPEG 640x360",
        "sneaky.png": "GIF 640x360 -> JPEG 640x360",
    }


def test_a_picture_over_10_mb_is_converted_to_fit(tmp_path):
    big = tmp_path / "big.png"
    draw_image(big, 640, 360)
    with big.open("ab") as handle:
        handle.truncate(IMAGE_MAX_BYTES + 1)
    result = plan_rows(tmp_path, "  - {id: r, image: big.png, prompt: p}\n")
    assert result.ok
    (picture,) = result.conversions
    assert picture.conversion.encode == "JPEG" and picture.name.endswith(".jpg")


def test_a_file_no_picture_is_that_big_is_refused_without_reading_it(tmp_path):
    huge = tmp_path / "huge.png"
    draw_image(huge, 640, 360)
    with huge.open("ab") as handle:
        handle.truncate(PICTURE_MAX_BYTES + 1)  # sparse: nothing is written
    assert "more than 200 MB is no picture" in only_problem(
        plan_rows(tmp_path, "  - {id: r, image: huge.png, prompt: p}\n")
    )


def test_every_problem_is_reported_at_once_and_each_once(tmp_path, ok_image):
    result = plan_rows(
        tmp_path,
        "  - {id: a, image: nowhere.png, prompt: p, duration: [5, 10]}\n"
        "  - {id: b, image: ok.png, prompt: p, duration: 7, aspect_ratio: '4:3'}\n",
    )
    # Row a's missing image is shared by its two tasks: reported once.
    assert sorted((p.row, p.field) for p in result.problems) == [
        ("a", "image"),
        ("b", "aspect_ratio"),
        ("b", "duration"),
    ]


def test_csv_values_are_coerced_and_checked(tmp_path, ok_image):
    path = tmp_path / "batch.csv"
    path.write_text(
        "id,image,prompt,duration,sound,cfg_scale\nr,ok.png,p,10,no,0.25\n", encoding="utf-8"
    )
    [task] = plan(load(path)).tasks
    assert (task.request.duration, task.request.sound, task.request.cfg_scale) == (10, False, 0.25)


def test_voices_with_sound_off_warn_but_do_not_fail(tmp_path, ok_image):
    result = plan_rows(
        tmp_path, "  - {id: r, image: ok.png, prompt: p, sound: false, voice_list: [v1]}\n"
    )
    assert result.ok
    assert "voices are ignored: sound is off" in str(result.warnings[0])


def test_sound_by_default_is_counted_and_priced(tmp_path, ok_image):
    result = plan_rows(tmp_path, "  - {id: r, image: ok.png, prompt: p}\n")
    assert result.sound_by_default == 1
    assert result.tasks[0].est_cost_usd == pytest.approx(5 * 0.14)


def seed(**values):
    """A request of the seed model from manifest-style values."""
    typed, problems = SEED.check(values)
    assert not problems, problems
    return SEED.request(typed)


def test_body_sends_raw_base64_urls_as_they_are_and_voice_items(ok_image):
    request = seed(image=str(ok_image), prompt="p", voice_list=["v1", "v2"])
    body = request.body({"image": image_payload(request.image)})
    assert base64.b64decode(body["image"], validate=True) == ok_image.read_bytes()
    assert not body["image"].startswith("data:")
    assert body["voice_list"] == [{"voice_id": "v1"}, {"voice_id": "v2"}]
    assert body["duration"] == 5 and isinstance(body["duration"], int)
    url_request = seed(image="https://example.com/a.png", prompt="p")
    assert image_payload(url_request.image) == "https://example.com/a.png"
    assert "voice_list" not in url_request.body({"image": "u"})


def test_fingerprint_follows_image_content_and_settings(tmp_path):
    path = draw_image(tmp_path / "a.png", 640, 360)
    request = seed(image=str(path), prompt="p")
    digest = open_picture(path).sha256
    same = request.fingerprint({"image": digest})
    assert seed(image=str(path), prompt="p").fingerprint({"image": digest}) == same
    assert seed(image=str(path), prompt="q").fingerprint({"image": digest}) != same
    draw_image(path, 640, 400)  # same path, new picture
    assert request.fingerprint({"image": open_picture(path).sha256}) != same


@pytest.mark.parametrize(
    ("sound", "voices", "duration", "usd"),
    [(False, (), 5, 0.35), (True, (), 5, 0.70), (True, ("v",), 5, 0.84), (True, (), 10, 1.40)],
)
def test_price_table(sound, voices, duration, usd):
    request = seed(image="x", prompt="p", sound=sound, voice_list=list(voices), duration=duration)
    assert request.estimate() == pytest.approx(usd)
    assert request.estimate({"silent": 0.1, "sound": 0.2, "sound_voices": 0.3}) != usd


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("cat/1", "cat_1.mp4"),
        ("../../etc/passwd/1", "etc_passwd_1.mp4"),
        ("a b:c/2", "a_b_c_2.mp4"),
    ],
)
def test_video_file_names_cannot_escape_the_videos_folder(key, name):
    assert video_file_name(key) == name


def test_file_names_that_would_clash_get_a_digest_of_their_key(tmp_path, ok_image):
    result = plan_rows(
        tmp_path,
        "  - {id: 'a b', image: ok.png, prompt: p}\n  - {id: 'a_b', image: ok.png, prompt: p}\n",
    )
    assert result.ok
    names = [task.video_name for task in result.tasks]
    digest = hashlib.sha256(b"a_b/1").hexdigest()[:12]
    assert names == ["a_b_1.mp4", f"a_b_1-{digest}.mp4"]


@pytest.mark.parametrize(
    "key",
    [
        "夜の港で静かに揺れる小さな船と灯台の光が水面に映る情景を描いた長い名前の行" * 2 + "/1",
        "x" * 300 + "/1",
    ],
)
def test_a_long_key_makes_a_name_any_disk_takes(key):
    name = video_file_name(key)
    assert len(name.encode("utf-8")) <= STEM_MAX_BYTES + len(".mp4")
    assert len(f"{name}.part".encode()) <= 143  # eCryptfs, the tightest common disk
    assert name != video_file_name(key.replace("/1", "/2"))  # the digest tells them apart
