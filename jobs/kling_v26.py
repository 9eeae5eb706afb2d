"""Kling V2.6 Pro image-to-video, the seed model: ``kling-v2.6-pro-i2v``.

Page: https://novita.ai/docs/api-reference/model-apis-kling-v2.6-pro-i2v (as summarised in
shared/novita-api.md). ``sound`` defaults to *on* at the API, at twice the price.
``voice_list`` items are not documented by Novita; Kling's own API takes
``{"voice_id": id}``, which is what is sent. Prices: not on Novita's pages we could read;
other hosts charge about $0.07/s silent, $0.14/s with sound, $0.168/s with voices.
"""

from __future__ import annotations

from jobs.contract import PROMPT_MAX_CHARS, Field, Kind, Model, Wire
from jobs.forms import FIRST_FRAME_FORMS, VOICE_FORMS
from jobs.rules import price_by_sound, voices_need_sound

NAME = "kling-v2.6-pro-i2v"

MODEL = Model(
    name=NAME,
    kind=Kind.IMAGE_TO_VIDEO,
    doc_url="https://novita.ai/docs/api-reference/model-apis-kling-v2.6-pro-i2v",
    fields=(
        Field("image", Wire.IMAGE, required=True, forms=FIRST_FRAME_FORMS),
        Field("prompt", Wire.TEXT, required=True, prompt=True),
        Field("negative_prompt", Wire.TEXT, prompt=True),
        Field("duration", Wire.INT, default=5, choices=(5, 10)),
        Field("cfg_scale", Wire.NUMBER, default=0.5, range=(0.0, 1.0), aliases=("guidance_scale",)),
        Field("sound", Wire.BOOL, default=True),
        Field("voice_list", Wire.VOICES, default=(), max_items=2, forms=VOICE_FORMS),
        Field("aspect_ratio", Wire.CHOICE, default="16:9", choices=("16:9", "9:16", "1:1")),
    ),
    prices={"silent": 0.07, "sound": 0.14, "sound_voices": 0.168},
    tier=price_by_sound,
    warnings=(voices_need_sound,),
    legacy_json=True,
    notes=f"sound is on unless set off (the API's default); prompts at most {PROMPT_MAX_CHARS}",
)
