"""Wire forms (issue 28, item 2), as pure rules pinned by tables: which field a refusal
names, which form comes next, what a body looks like in each form; then the run's
choice of form: forced, learned, condemned, settled."""

from __future__ import annotations

import pytest

from jobs import MODELS
from jobs.forms import ALONE, DATA_URI, RAW_BASE64, URL_ONLY, VOICE_IDS, data_uri
from runner.api.learned import Learned
from runner.api.wire_forms import (
    WireForms,
    fields_with_forms,
    names_the_picture,
    next_form,
    refused_field,
)
from runner.core.errors import InvalidRequest

V26, V30 = MODELS["kling-v2.6-pro-i2v"], MODELS["kling-v3.0-pro-i2v"]
O1 = MODELS["kling-o1-i2v"]
ALL_V30 = ("image", "end_image", "multi_prompt")
VOICED = ("image", "voice_list")
IR, IF = "INVALID_REQUEST_BODY", "INVALID_IMAGE_FORMAT"

# (model, reason, message, fields the request sent, the field it names)
REFUSALS = [
    (V26, "INVALID_IMAGE_FORMAT", "image: must be a data URI", ("image",), "image"),
    (V26, "INVALID_IMAGE_FORMAT", "Image pixel is invalid", ("image",), "image"),
    (V26, "INVALID_IMAGE_FORMAT", "bad input", ("image",), "image"),  # the code alone
    (V26, IR, "voice_list: each item must be a string", VOICED, "voice_list"),
    (V26, "INVALID_REQUEST_BODY", "invalid voice_list", ("image",), None),  # not sent
    (V26, "INVALID_REQUEST_BODY", "duration: must be 5 or 10", ("image",), None),
    (V26, "ILLEGAL_IMAGE_CONTENT", "image: sensitive content", ("image",), None),  # moderation
    (V26, "ILLEGAL_PROMPT", "the prompt is not allowed", ("image",), None),
    (V30, "INVALID_REQUEST_BODY", "end_image: must be an image URL", ALL_V30, "end_image"),
    (V30, IR, "prompt and multi_prompt are mutually exclusive", ALL_V30, "multi_prompt"),
    (V30, IF, "first frame invalid", ("end_image",), None),  # no first frame was sent
    (O1, "INVALID_REQUEST_BODY", "last_image: must be a URL", ("image", "end_image"), "end_image"),
]  # fmt: skip


@pytest.mark.parametrize(("model", "reason", "message", "used", "named"), REFUSALS)
def test_a_refusal_names_the_field_whose_form_to_change(model, reason, message, used, named):
    assert refused_field(InvalidRequest(400, reason, message), model, used) == named


# (the field's forms, the forms tried, the next)
NEXT = [
    ((RAW_BASE64, DATA_URI), (), RAW_BASE64),
    ((RAW_BASE64, DATA_URI), (RAW_BASE64,), DATA_URI),
    ((RAW_BASE64, DATA_URI), (RAW_BASE64, DATA_URI), None),  # stop: every form refused
    ((RAW_BASE64, DATA_URI, URL_ONLY), (RAW_BASE64, DATA_URI), URL_ONLY),
    ((RAW_BASE64, DATA_URI), (DATA_URI,), RAW_BASE64),  # a forced or learned start
]


@pytest.mark.parametrize(("forms", "tried", "upcoming"), NEXT)
def test_each_form_is_tried_once_in_its_order(forms, tried, upcoming):
    spec = V26.by_name["image"]
    assert next_form(type(spec)("image", spec.wire, forms=forms), tried) == upcoming


def test_a_body_in_each_form():
    request = V30.request(
        {
            "image": "a.png",
            "prompt": "p",
            "end_image": "https://example.com/b.jpg",
            "multi_prompt": ({"prompt": "x", "duration": 5},),
        }
    )
    images = {"image": "iVBORw0KGgoAAAA", "end_image": "https://example.com/b.jpg"}
    default = request.body(images)
    assert default["image"] == "iVBORw0KGgoAAAA" and "prompt" in default
    changed = request.body(
        images, {"image": DATA_URI, "end_image": DATA_URI, "multi_prompt": ALONE}
    )
    assert changed["image"] == "data:image/png;base64,iVBORw0KGgoAAAA"
    assert changed["end_image"] == "https://example.com/b.jpg"  # a URL goes as it is
    assert "prompt" not in changed and changed["multi_prompt"] == [{"prompt": "x", "duration": 5}]
    assert data_uri("/9j/4AAQ") == "data:image/jpeg;base64,/9j/4AAQ"
    voices = V26.request({"image": "a.png", "prompt": "p", "voice_list": ("v1", "v2")})
    assert voices.body({"image": "b64"})["voice_list"] == [{"voice_id": "v1"}, {"voice_id": "v2"}]
    assert voices.body({"image": "b64"}, {"voice_list": VOICE_IDS})["voice_list"] == ["v1", "v2"]
    with pytest.raises(ValueError, match="cannot be sent as url-only"):
        request.body({"image": "b64", "end_image": "b64"}, {"end_image": URL_ONLY})


def test_the_fields_a_request_sends_in_an_open_form():
    url = V30.request({"image": "https://example.com/a.jpg", "prompt": "p"})
    assert fields_with_forms(url) == []  # a URL travels as it is
    local = V26.request({"image": "a.png", "prompt": "p", "voice_list": ("v",)})
    assert fields_with_forms(local) == ["image", "voice_list"]


@pytest.mark.parametrize(
    ("reason", "pictured"),
    [
        ("Image pixel is invalid", True),
        ("the first frame could not be decoded", True),
        ("TASK_FAILED: the model could not generate this video", False),
        ("image flagged by content moderation", False),  # its content, in any form
    ],
)
def test_a_failure_that_points_at_the_picture(reason, pictured):
    assert names_the_picture(reason) is pictured


def test_forced_beats_learned_beats_condemned_beats_the_first(tmp_path, monkeypatch):
    monkeypatch.setenv("KLING_BATCH_CACHE", str(tmp_path))
    learned = Learned.open("https://api.example")
    image = V26.by_name["image"]
    assert WireForms(learned).form(V26, image) == RAW_BASE64
    learned.learn("kling-v2.6-pro-i2v/image/failed", RAW_BASE64, "seen")
    assert WireForms(learned).form(V26, image) == DATA_URI  # condemned after billing
    learned.learn("kling-v2.6-pro-i2v/image", RAW_BASE64, "succeeded")
    assert WireForms(learned).form(V26, image) == RAW_BASE64  # what made a video wins
    forced = WireForms(learned, {"kling-v2.6-pro-i2v.image": DATA_URI})
    assert (
        forced.form(V26, image) == DATA_URI and forced.form(V30, V30.by_name["image"]) == RAW_BASE64
    )
    refusal = InvalidRequest(400, "INVALID_IMAGE_FORMAT", "image: no")
    adapted = forced.after_refusal(V26, refusal, ["image"])
    assert adapted is not None and adapted.next is None  # a forced form is never changed


def test_a_form_is_settled_by_the_proof_its_field_needs(tmp_path, monkeypatch):
    monkeypatch.setenv("KLING_BATCH_CACHE", str(tmp_path))
    learned = Learned.open("https://api.example")
    wire = WireForms(learned)
    wire.accepted(V26, ["image", "voice_list"])
    assert wire.settled(V26, "voice_list")  # taken: its form was read
    assert not wire.settled(V26, "image")  # a picture may be taken, then fail after billing
    wire.succeeded(V26, ["image"])
    assert wire.settled(V26, "image")
    again = Learned.open("https://API.example/")  # one API however it is spelled
    assert again.get("kling-v2.6-pro-i2v/image").proof == "succeeded"
