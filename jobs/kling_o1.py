"""Kling O1 (Omni Video) on Novita: ``kling-o1-i2v`` and ``kling-o1-t2v``.

Pages:
- https://novita.ai/docs/api-reference/model-apis-kling-o1-i2v
- https://novita.ai/docs/api-reference/model-apis-kling-o1-t2v

``duration`` is an integer (5 or 10); the last frame is called ``last_image`` on the wire
(a manifest may say ``end_image``, the v3.0 name: one name drives both). No guidance, no
negative prompt, no sound. The pages state no prompt length; the family's 2500 is
applied. Price: $0.112 per second for both, from Novita's own blog post on Kling O1
(blogs.novita.ai, "Kling O1 on Novita AI"), an estimate like every figure here.
"""

from __future__ import annotations

from jobs.contract import Field, Kind, Model, Wire
from jobs.forms import FIRST_FRAME_FORMS, LAST_FRAME_FORMS
from jobs.rules import flat_price

_RATIOS = Field("aspect_ratio", Wire.CHOICE, default="16:9", choices=("16:9", "9:16", "1:1"))
_DURATION = Field("duration", Wire.INT, default=5, choices=(5, 10))
_PROMPT = Field("prompt", Wire.TEXT, required=True, prompt=True)

I2V = Model(
    name="kling-o1-i2v",
    kind=Kind.IMAGE_TO_VIDEO,
    doc_url="https://novita.ai/docs/api-reference/model-apis-kling-o1-i2v",
    fields=(
        Field("image", Wire.IMAGE, required=True, forms=FIRST_FRAME_FORMS),
        _PROMPT,
        _DURATION,
        Field(
            "end_image",
            Wire.IMAGE,
            api_name="last_image",
            aliases=("last_image",),
            forms=LAST_FRAME_FORMS,
        ),
        _RATIOS,
    ),
    prices={"standard": 0.112},
    tier=flat_price,
    notes="end_image is sent as last_image",
)

T2V = Model(
    name="kling-o1-t2v",
    kind=Kind.TEXT_TO_VIDEO,
    doc_url="https://novita.ai/docs/api-reference/model-apis-kling-o1-t2v",
    fields=(_PROMPT, _DURATION, _RATIOS),
    prices={"standard": 0.112},
    tier=flat_price,
    notes="text to video: no image",
)

MODELS = (I2V, T2V)
