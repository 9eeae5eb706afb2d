"""Each plausible reading of what Novita's pages leave open, played on demand.

The pages say "string" for a first frame, "List of voice IDs" with an example of
``[{}]``, "Ending frame image URL", and that ``multi_prompt`` is "mutually exclusive
with prompt" while ``prompt`` is marked required (shared/novita-api.md). The
simulator takes one reading of each (:class:`Readings`, in its config) and reads a
submitted body that way: a form the reading does not take is refused as the API would
(400, naming the field), and a body in the reading's form is turned into the canonical
one (raw base64, voice objects, ``prompt`` beside ``multi_prompt``) for the checks that
follow. Written from the docs, not from the client's ``jobs.forms``: the simulator is
the client's independent counterpart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.contract import Model, Wire
from jobs.problems import FieldProblem

# How a first frame may come: "raw" (bare base64; a data: URI refused, Kling's own
# documented rule), "data-uri" (a data: URI only; bare base64 refused), "either", or
# "raw-fails" (both taken; a task sent bare base64 is billed, then fails for its picture,
# as native Kling does: "Image pixel is invalid").
IMAGE_READINGS = ("raw", "data-uri", "either", "raw-fails")
VOICE_READINGS = ("objects", "ids")
BAD_PIXELS = "Image pixel is invalid"


@dataclass(frozen=True)
class Readings:
    image: str = "raw"
    voices: str = "objects"
    multi_prompt_alone: bool = False  # "mutually exclusive with prompt", taken literally
    end_image_url_only: bool = False  # "Ending frame image URL", taken literally


@dataclass(frozen=True)
class Read:
    """A body as this reading takes it: the canonical body (or the refusal), and
    whether its first frame came as bare base64 (for ``raw-fails``)."""

    body: dict[str, Any]
    problem: FieldProblem | None = None
    bare_first_frame: bool = False


def read_forms(model: Model, body: dict[str, Any], readings: Readings) -> Read:
    """Refuse what the reading refuses; otherwise the body in canonical form."""
    canonical = dict(body)
    bare_first_frame = False
    images = [f for f in model.fields if f.wire == Wire.IMAGE]
    for position, spec in enumerate(images):
        value = body.get(spec.sent_as)
        if not isinstance(value, str) or value[:8].lower().startswith(("http://", "https://")):
            continue
        if position > 0 and readings.end_image_url_only:
            return Read(body, _refusal(spec.sent_as, "must be an image URL"))
        if value.startswith("data:"):
            if readings.image == "raw":
                return Read(body, _image("raw base64 without a data: prefix", spec.sent_as))
            canonical[spec.sent_as] = value.partition(",")[2]
        elif readings.image == "data-uri":
            return Read(body, _image("must be a data:image/...;base64, URI", spec.sent_as))
        else:
            bare_first_frame = bare_first_frame or position == 0
    voices = body.get("voice_list")
    if isinstance(voices, list) and voices:
        as_ids = all(isinstance(v, str) for v in voices)
        if readings.voices == "ids" and not as_ids:
            return Read(body, _refusal("voice_list", "each item must be a voice id string"))
        if as_ids:
            if readings.voices != "ids":
                return Read(body, _refusal("voice_list", 'items must be {"voice_id": id}'))
            canonical["voice_list"] = [{"voice_id": v} for v in voices]
    problem = _prompts(canonical, readings)
    return Read(canonical, problem, bare_first_frame)


def _prompts(body: dict[str, Any], readings: Readings) -> FieldProblem | None:
    """``multi_prompt`` beside ``prompt``, or alone, as the reading takes it."""
    segments = body.get("multi_prompt")
    if not segments:
        return None
    if readings.multi_prompt_alone:
        if "prompt" in body:
            return _refusal("multi_prompt", "prompt and multi_prompt are mutually exclusive")
        first = segments[0] if isinstance(segments, list) and segments else {}
        body["prompt"] = first.get("prompt", "") if isinstance(first, dict) else ""
    return None


def _refusal(field: str, rule: str) -> FieldProblem:
    return FieldProblem(field, None, rule, "INVALID_REQUEST_BODY")


def _image(rule: str, field: str) -> FieldProblem:
    return FieldProblem(field, None, rule, "INVALID_IMAGE_FORMAT")
