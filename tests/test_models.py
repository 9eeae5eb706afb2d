"""The job contract and the Kling family on it: what each model takes, how it is sent
(names and wire types, field by field), what it refuses, and that the seed model's
requests and fingerprints are exactly what older ledgers hold."""

from __future__ import annotations

import json

import pytest

from jobs import DEFAULT_MODEL, MODELS, model_named, price_tables, request_from_json
from jobs.contract import Kind

IMAGE = "/frames/cat.png"


def body_of(model: str, **values):
    spec = model_named(model)
    typed, problems = spec.check(values)
    assert not problems, [f"{p.field}: {p.rule}" for p in problems]
    request = spec.request(typed)
    images = {name: f"<{name} bytes>" for name in spec.image_fields if request.get(name)}
    return request, request.body(images)


# What the seed model's requests looked like before models had names (golden values,
# computed with the code of the time): older ledgers hold these JSONs and fingerprints.
LEGACY = [
    (
        {"image": IMAGE, "prompt": "a cat"},
        '{"aspect_ratio": "16:9", "cfg_scale": 0.5, "duration": 5, "image": "/frames/cat.png", '
        '"negative_prompt": null, "prompt": "a cat", "sound": true, "voice_list": []}',
        "4446ec274708402b",
        0.7,
    ),
    (
        {"image": IMAGE, "prompt": " turns ", "duration": 10, "sound": False, "cfg_scale": 0.3},
        '{"aspect_ratio": "16:9", "cfg_scale": 0.3, "duration": 10, "image": "/frames/cat.png", '
        '"negative_prompt": null, "prompt": " turns ", "sound": false, "voice_list": []}',
        "382204ee850a90fa",
        0.7,
    ),
    (
        {"image": IMAGE, "prompt": "p", "negative_prompt": "blur", "voice_list": ["v1", "v2"]},
        '{"aspect_ratio": "16:9", "cfg_scale": 0.5, "duration": 5, "image": "/frames/cat.png", '
        '"negative_prompt": "blur", "prompt": "p", "sound": true, "voice_list": ["v1", "v2"]}',
        "ff6e88b136a6673a",
        0.84,
    ),
    (
        {"image": IMAGE, "prompt": "p", "aspect_ratio": "9:16", "duration": "5", "sound": "no"},
        '{"aspect_ratio": "9:16", "cfg_scale": 0.5, "duration": 5, "image": "/frames/cat.png", '
        '"negative_prompt": null, "prompt": "p", "sound": false, "voice_list": []}',
        "e50c9874953142f2",
        0.35,
    ),
]


@pytest.mark.parametrize(("values", "stored", "fingerprint", "usd"), LEGACY)
def test_the_seed_models_requests_and_fingerprints_are_unchanged(values, stored, fingerprint, usd):
    """Older run folders hold requests in the seed model's old shape: the contract gives
    the same JSON and fingerprint, or every old folder would refuse its own rows."""
    spec = model_named(DEFAULT_MODEL)
    typed, problems = spec.check(values)
    request = spec.request(typed)
    assert not problems
    assert request.to_json() == stored
    assert request.fingerprint({"image": "sha"}) == fingerprint
    assert request.estimate() == usd
    assert request_from_json(stored).to_json() == stored  # read back from a ledger as is


def test_v21_sends_duration_as_a_string_and_guidance_under_its_own_name():
    request, body = body_of(
        "kling-v2.1-i2v", image=IMAGE, prompt="p", duration=10, cfg_scale=0.3, mode="Professional"
    )
    assert body == {
        "image": "<image bytes>",
        "prompt": "p",
        "mode": "Professional",
        "duration": "10",
        "guidance_scale": 0.3,
    }
    assert request.tier() == "professional" and request.duration == 10
    assert json.loads(request.to_json())["model"] == "kling-v2.1-i2v"


def test_one_manifest_name_drives_both_spellings_of_a_setting():
    _, v21 = body_of("kling-v2.1-i2v-master", image=IMAGE, prompt="p", guidance_scale=0.7)
    _, v30 = body_of("kling-v3.0-std-i2v", image=IMAGE, prompt="p", guidance_scale=0.7)
    assert v21["guidance_scale"] == 0.7 and v30["cfg_scale"] == 0.7
    _, o1 = body_of("kling-o1-i2v", image=IMAGE, prompt="p", end_image="/frames/end.png")
    assert o1["last_image"] == "<end_image bytes>" and "end_image" not in o1


def test_v30_takes_segments_and_integer_durations_up_to_15():
    _, body = body_of(
        "kling-v3.0-std-i2v",
        image=IMAGE,
        prompt="p",
        duration=12,
        multi_prompt=[{"prompt": "wide", "duration": 5}, {"prompt": "close", "duration": 7}],
    )
    assert body["duration"] == 12 and body["sound"] is False  # sound is off by default here
    assert body["multi_prompt"] == [
        {"prompt": "wide", "duration": 5},
        {"prompt": "close", "duration": 7},
    ]


def test_text_to_video_needs_no_image_and_takes_none():
    _, body = body_of("kling-v3.0-std-t2v", prompt="a city at night", aspect_ratio="9:16")
    assert "image" not in body and body["aspect_ratio"] == "9:16"
    _, problems = model_named("kling-o1-t2v").check({"prompt": "p", "image": IMAGE})
    assert [p.field for p in problems] == ["image"]
    assert "is not a field of kling-o1-t2v" in problems[0].rule
    assert "it takes: aspect_ratio, duration, prompt" in problems[0].rule


@pytest.mark.parametrize(
    ("model", "values", "field", "rule"),
    [
        ("kling-o1-i2v", {"duration": 7}, "duration", "must be one of 5, 10"),
        ("kling-v3.0-std-i2v", {"duration": 16}, "duration", "must be one of 3, 4, 5"),
        ("kling-v2.1-i2v", {"mode": "Turbo"}, "mode", "must be one of Standard, Professional"),
        ("kling-v2.1-i2v", {"sound": True}, "sound", "is not a field of kling-v2.1-i2v"),
        ("kling-v2.1-i2v", {"cfg_scale": 1.5}, "cfg_scale", "must be between 0.0 and 1.0"),
        (
            "kling-v3.0-std-i2v",
            {"end_image": "/e.png", "multi_prompt": [{"prompt": "a", "duration": 5}]},
            "multi_prompt",
            "cannot be used together with end_image",
        ),
        (
            "kling-v3.0-pro-i2v",
            {"duration": 10, "multi_prompt": [{"prompt": "a", "duration": 4}]},
            "multi_prompt",
            "segments add up to 4s, duration is 10s",
        ),
    ],
)
def test_each_model_refuses_what_its_page_does_not_allow(model, values, field, rule):
    _, problems = model_named(model).check({"image": IMAGE, "prompt": "p", **values})
    assert [(p.field, rule in p.rule) for p in problems] == [(field, True)], problems


def test_every_model_is_declared_whole():
    for name, model in MODELS.items():
        assert model.path == f"/v3/async/{name}"
        assert model.doc_url.startswith("https://novita.ai/docs/api-reference/model-apis-")
        assert model.takes("prompt") and model.prices
        assert ("image" in model.image_fields) == (model.kind == Kind.IMAGE_TO_VIDEO)
        for tier_values in ({}, {"sound": True}, {"mode": "Professional"}):
            assert model.tier(tier_values) in model.prices


def test_a_price_override_must_name_a_tier_the_model_has():
    tables, problems = price_tables({"kling-o1-i2v.standard": 0.2, "sound": 0.12})
    assert not problems and tables["kling-o1-i2v"]["standard"] == 0.2
    assert tables["kling-v2.6-pro-i2v"]["sound"] == tables["kling-v3.0-std-i2v"]["sound"] == 0.12
    _, problems = price_tables({"kling-o1-i2v.sound": 0.2, "loud": 1})
    assert [p.field for p in problems] == ["prices.kling-o1-i2v.sound", "prices.loud"]
    assert "is not a price tier (standard)" in problems[0].rule
