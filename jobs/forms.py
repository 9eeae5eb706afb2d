"""Wire forms: where Novita's pages leave a field's form open, the forms it may take.

The pages say "string" for a first frame, "List of voice IDs" with an example of
``[{}]``, "Ending frame image URL", and that ``multi_prompt`` is "mutually exclusive with
prompt" while ``prompt`` is marked required (shared/novita-api.md, "What the pages
leave open"). Each field with more than one plausible form declares them here, in the
order they are tried: the first is what kling-batch has always sent. Which one the API
takes is learned at first contact (``runner.api.wire_forms``); this module only says what
the forms are and how a value looks in each. It imports nothing of the project's.
"""

from __future__ import annotations

from collections.abc import Sequence

RAW_BASE64 = "raw-base64"  # a local picture as bare base64: Kling's own API's form
DATA_URI = "data-uri"  # data:image/png;base64,...: what integrations of a sister site send
URL_ONLY = "url-only"  # the field takes an http(s) URL only: a local picture cannot go
VOICE_OBJECTS = "objects"  # [{"voice_id": "..."}]: Kling's own API's form
VOICE_IDS = "ids"  # ["..."]: "List of voice IDs", read literally
WITH_PROMPT = "with-prompt"  # multi_prompt sent beside the required prompt
ALONE = "alone"  # multi_prompt instead of prompt: "mutually exclusive with prompt"

FIRST_FRAME_FORMS = (RAW_BASE64, DATA_URI)
LAST_FRAME_FORMS = (RAW_BASE64, DATA_URI, URL_ONLY)
VOICE_FORMS = (VOICE_OBJECTS, VOICE_IDS)
SEGMENT_FORMS = (WITH_PROMPT, ALONE)

DESCRIBED = {
    RAW_BASE64: "raw base64 (no data: prefix)",
    DATA_URI: "a data:image/...;base64, URI",
    URL_ONLY: "an http(s) URL only (a local picture cannot be sent)",
    VOICE_OBJECTS: 'objects ({"voice_id": id})',
    VOICE_IDS: "plain voice id strings",
    WITH_PROMPT: "beside prompt",
    ALONE: "instead of prompt",
}
ALL_FORMS = frozenset(DESCRIBED)

_MAGIC = (("iVBORw0KGgo", "png"), ("/9j/", "jpeg"))  # base64 of PNG's and JPEG's first bytes


def image_as(form: str, payload: str) -> str | None:
    """A picture's payload (raw base64 of a local file, or a URL) as ``form`` sends
    it; None when a local picture cannot be sent in that form (``url-only``). A URL is
    sent as it is in every form."""
    if payload[:8].lower().startswith(("http://", "https://")):
        return payload
    if form == DATA_URI:
        return data_uri(payload)
    if form == URL_ONLY:
        return None
    return payload


def data_uri(raw_base64: str) -> str:
    """``data:image/<type>;base64,<data>``, the type read from the data's first bytes."""
    kind = next((k for magic, k in _MAGIC if raw_base64.startswith(magic)), "png")
    return f"data:image/{kind};base64,{raw_base64}"


def voices_as(form: str, voice_ids: Sequence[str]) -> list[object]:
    if form == VOICE_IDS:
        return list(voice_ids)
    return [{"voice_id": voice} for voice in voice_ids]
