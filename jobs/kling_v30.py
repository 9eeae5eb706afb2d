"""Kling v3.0 on Novita: ``kling-v3.0-std-i2v``, ``kling-v3.0-std-t2v``, ``kling-v3.0-pro-i2v``.

Pages:
- https://novita.ai/docs/api-reference/model-apis-kling-v3.0-std-i2v
- https://novita.ai/docs/api-reference/model-apis-kling-v3.0-std-t2v
- https://novita.ai/docs/api-reference/model-apis-kling-v3.0-pro-i2v

``duration`` is an integer from 3 to 15; ``sound`` defaults to *off* here (on the seed
model it defaults to on); ``end_image`` (i2v) and ``multi_prompt`` (segments, each a
prompt and a duration) cannot be used together. Where the pages are silent or disagree:
the std-i2v page gives no ``cfg_scale`` default in one rendering and 0.5 in another (0.5
is used); the std-t2v page lists no ``multi_prompt`` (the pro-t2v page does, as an
alternative to ``prompt``: not modelled yet); no page says the segments must add up to
the duration (a third-party Kling page does: it is checked here, since a mismatch is
the likeliest refusal). Prices are estimates (none published on Novita's pages we
could read): set your own with ``prices:``.
"""

from __future__ import annotations

from jobs.contract import Field, Kind, Model, Wire
from jobs.forms import FIRST_FRAME_FORMS, LAST_FRAME_FORMS, SEGMENT_FORMS
from jobs.rules import not_both, price_by_sound, segments_fill_duration

_SECONDS = tuple(range(3, 16))
_COMMON = (
    Field("prompt", Wire.TEXT, required=True, prompt=True),
    Field("negative_prompt", Wire.TEXT, prompt=True),
    Field("duration", Wire.INT, default=5, choices=_SECONDS),
    Field("cfg_scale", Wire.NUMBER, default=0.5, range=(0.0, 1.0), aliases=("guidance_scale",)),
    Field("sound", Wire.BOOL, default=False),
)
_I2V_FIELDS = (
    Field("image", Wire.IMAGE, required=True, forms=FIRST_FRAME_FORMS),
    *_COMMON,
    Field("end_image", Wire.IMAGE, aliases=("last_image",), forms=LAST_FRAME_FORMS),
    Field("multi_prompt", Wire.SEGMENTS, forms=SEGMENT_FORMS),
)


def _i2v(tier: str, prices: dict[str, float]) -> Model:
    """The std and pro image-to-video endpoints take the same fields and rules."""
    name = f"kling-v3.0-{tier}-i2v"
    return Model(
        name=name,
        kind=Kind.IMAGE_TO_VIDEO,
        doc_url=f"https://novita.ai/docs/api-reference/model-apis-{name}",
        fields=_I2V_FIELDS,
        prices=prices,
        tier=price_by_sound,
        rules=(not_both("end_image", "multi_prompt"), segments_fill_duration),
        notes="sound off by default; end_image xor multi_prompt",
    )


STD_I2V = _i2v("std", {"silent": 0.084, "sound": 0.126, "sound_voices": 0.126})
PRO_I2V = _i2v("pro", {"silent": 0.112, "sound": 0.168, "sound_voices": 0.168})

STD_T2V = Model(
    name="kling-v3.0-std-t2v",
    kind=Kind.TEXT_TO_VIDEO,
    doc_url="https://novita.ai/docs/api-reference/model-apis-kling-v3.0-std-t2v",
    fields=(
        *_COMMON,
        Field("aspect_ratio", Wire.CHOICE, default="16:9", choices=("16:9", "9:16", "1:1")),
    ),
    prices={"silent": 0.084, "sound": 0.126, "sound_voices": 0.126},
    tier=price_by_sound,
    notes="text to video: no image; sound off by default",
)

MODELS = (STD_I2V, PRO_I2V, STD_T2V)
