"""Kling V2.6 Pro image-to-video on Novita: what one task is, and what the API accepts.

Everything the API documents about this model lives here, once: the fields and their
defaults, every input limit, how a manifest row becomes a request body, and the price
table used for estimates. The runner validates with it before spending anything, and
the simulator enforces the very same rules, so the two can never drift apart.

This module imports nothing from ``runner``: a job describes *what* is sent, never *how*.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from jobs import images
from jobs.images import (
    IMAGE_ASPECT_RANGE,
    IMAGE_FORMATS,
    IMAGE_MAX_BYTES,
    IMAGE_MIN_SIDE,
    IMAGE_SUFFIXES,
    ImageFacts,
    check_image_bytes,
    check_image_file,
    check_image_reference,
    check_image_url,
    is_url,
    orientation,
)
from jobs.problems import FieldProblem

__all__ = [
    "IMAGE_ASPECT_RANGE",
    "IMAGE_FORMATS",
    "IMAGE_MAX_BYTES",
    "IMAGE_MIN_SIDE",
    "IMAGE_SUFFIXES",
    "ImageFacts",
    "check_image_bytes",
    "check_image_file",
    "check_image_reference",
    "check_image_url",
    "is_url",
]

NAME = "kling-v2.6-pro-i2v"
SUBMIT_PATH = "/v3/async/kling-v2.6-pro-i2v"

# --- limits, as documented (shared/novita-api.md) ---------------------------------
PROMPT_MAX_CHARS = 2500
DURATIONS = (5, 10)
CFG_SCALE_RANGE = (0.0, 1.0)
MAX_VOICES = 2
ASPECT_RATIOS = ("16:9", "9:16", "1:1")

# The API's own defaults. Note sound defaults to *on* (and to its higher price).
API_DEFAULTS: dict[str, Any] = {
    "duration": 5,
    "cfg_scale": 0.5,
    "sound": True,
    "aspect_ratio": "16:9",
}

# Fields a manifest may set for this job (besides the runner's own `id` and `repeat`).
FIELDS = (
    "image",
    "prompt",
    "negative_prompt",
    "duration",
    "cfg_scale",
    "sound",
    "voice_list",
    "aspect_ratio",
)
REQUIRED = ("image", "prompt")

# --- price (estimates only: Novita publishes none we could read) ------------------
# USD per second of video, from other hosts' public prices for Kling 2.6 Pro.
PRICE_PER_SECOND: dict[str, float] = {
    "silent": 0.07,
    "sound": 0.14,
    "sound_voices": 0.168,
}


@dataclass(frozen=True)
class Request:
    """One fully resolved generation request, with the image still a reference.

    ``image`` is an absolute file path or an http(s) URL. The image bytes are read only
    when the request is sent (see :func:`image_payload`), so that a batch of thousands
    of rows never holds thousands of base64 strings in memory.
    """

    image: str
    prompt: str
    negative_prompt: str | None = None
    duration: int = API_DEFAULTS["duration"]
    cfg_scale: float = API_DEFAULTS["cfg_scale"]
    sound: bool = API_DEFAULTS["sound"]
    voice_list: tuple[str, ...] = field(default_factory=tuple)
    aspect_ratio: str = API_DEFAULTS["aspect_ratio"]

    @property
    def image_is_url(self) -> bool:
        return is_url(self.image)

    def to_json(self) -> str:
        """Canonical JSON of the settings (image as reference): stored in the ledger."""
        data = {name: getattr(self, name) for name in _REQUEST_FIELDS}  # asdict() is 5x slower
        data["voice_list"] = list(self.voice_list)
        return json.dumps(data, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Request:
        data = json.loads(text)
        data["voice_list"] = tuple(data.get("voice_list") or ())
        return cls(**data)


_REQUEST_FIELDS = tuple(f.name for f in fields(Request))


# --- coercion: manifest values (YAML-typed or CSV strings) -> typed values ---------

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _coerce_int(name: str, value: Any) -> int | FieldProblem:
    if isinstance(value, bool):
        return FieldProblem(name, value, "must be a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value.strip())
    return FieldProblem(name, value, "must be a whole number")


def _coerce_float(name: str, value: Any) -> float | FieldProblem:
    if isinstance(value, bool):
        return FieldProblem(name, value, "must be a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    return FieldProblem(name, value, "must be a number")


def _coerce_bool(name: str, value: Any) -> bool | FieldProblem:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    return FieldProblem(name, value, "must be true or false")


def _coerce_voices(value: Any) -> tuple[str, ...] | FieldProblem:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(";") if v.strip())
    if isinstance(value, list | tuple) and all(isinstance(v, str) and v.strip() for v in value):
        return tuple(v.strip() for v in value)
    return FieldProblem("voice_list", value, "must be a list of voice ids (strings)")


def check_fields(values: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldProblem]]:
    """Coerce and check every setting except the image itself; report all problems.

    Returns the typed values (only those that passed) and the problems found. Unknown
    fields are problems too: a typo such as ``durations: 10`` must never silently
    fall back to the default and cost money for the wrong video.
    """
    problems: list[FieldProblem] = []
    typed: dict[str, Any] = {}
    for name in values:
        if name not in FIELDS:
            problems.append(FieldProblem(name, values[name], _unknown_field_rule(name)))
    for name in REQUIRED:
        value = values.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            problems.append(FieldProblem(name, value, "is required"))

    _check_texts(values, typed, problems)
    _check_choice(values, typed, problems, "duration", _coerce_int, DURATIONS)
    _check_choice(values, typed, problems, "aspect_ratio", _as_text, ASPECT_RATIOS)
    _check_settings(values, typed, problems)
    return typed, problems


def _check_texts(
    values: Mapping[str, Any], typed: dict[str, Any], problems: list[FieldProblem]
) -> None:
    """The prompt and the negative prompt: text, at most PROMPT_MAX_CHARS."""
    prompt = values.get("prompt")
    if prompt is not None:
        if not isinstance(prompt, str):
            problems.append(FieldProblem("prompt", prompt, "must be text"))
        elif len(prompt) > PROMPT_MAX_CHARS:
            problems.append(_too_long("prompt", prompt))
        elif prompt.strip():
            typed["prompt"] = prompt
    negative = values.get("negative_prompt")
    if negative not in (None, ""):
        if not isinstance(negative, str):
            problems.append(FieldProblem("negative_prompt", negative, "must be text"))
        elif len(negative) > PROMPT_MAX_CHARS:
            problems.append(_too_long("negative_prompt", negative))
        else:
            typed["negative_prompt"] = negative


def _check_settings(
    values: Mapping[str, Any], typed: dict[str, Any], problems: list[FieldProblem]
) -> None:
    """cfg_scale, sound and voice_list: coerced from YAML or CSV text, then checked."""
    if values.get("cfg_scale") not in (None, ""):
        cfg = _coerce_float("cfg_scale", values["cfg_scale"])
        low, high = CFG_SCALE_RANGE
        if isinstance(cfg, FieldProblem):
            problems.append(cfg)
        elif not low <= cfg <= high:
            problems.append(FieldProblem("cfg_scale", cfg, f"must be between {low} and {high}"))
        else:
            typed["cfg_scale"] = cfg
    if values.get("sound") not in (None, ""):
        sound = _coerce_bool("sound", values["sound"])
        if isinstance(sound, FieldProblem):
            problems.append(sound)
        else:
            typed["sound"] = sound
    if "voice_list" in values:
        voices = _coerce_voices(values["voice_list"])
        if isinstance(voices, FieldProblem):
            problems.append(voices)
        elif len(voices) > MAX_VOICES:
            problems.append(
                FieldProblem("voice_list", list(voices), f"at most {MAX_VOICES} voices")
            )
        else:
            typed["voice_list"] = voices


def warnings_for(request: Request, image: ImageFacts | None = None) -> list[FieldProblem]:
    """Things that are allowed but probably not what the user meant."""
    found = []
    if image is not None and image.shown_width and image.shown_height:
        shown = orientation(image.shown_width, image.shown_height)
        stored = orientation(image.width, image.height)
        wanted = {"16:9": "landscape", "9:16": "portrait"}.get(request.aspect_ratio)
        if wanted and shown != stored and shown != wanted:
            found.append(
                FieldProblem(
                    "image",
                    f"{image.width}x{image.height} shown {image.shown_width}x{image.shown_height}",
                    f"its EXIF orientation shows it {shown}, but aspect_ratio is "
                    f"{request.aspect_ratio} ({wanted}): check which way the video should go",
                )
            )
    if request.voice_list and not request.sound:
        found.append(
            FieldProblem("voice_list", list(request.voice_list), "voices are ignored: sound is off")
        )
    return found


def _as_text(name: str, value: Any) -> str | FieldProblem:
    if isinstance(value, str):
        return value.strip()
    return FieldProblem(name, value, "must be text")


def _check_choice(
    values: Mapping[str, Any],
    typed: dict[str, Any],
    problems: list[FieldProblem],
    name: str,
    coerce: Callable[[str, Any], Any],
    choices: tuple[Any, ...],
) -> None:
    if values.get(name) in (None, ""):
        return
    value = coerce(name, values[name])
    if isinstance(value, FieldProblem):
        problems.append(value)
    elif value not in choices:
        allowed = ", ".join(str(c) for c in choices)
        problems.append(FieldProblem(name, values[name], f"must be one of {allowed}"))
    else:
        typed[name] = value


def _too_long(name: str, text: str) -> FieldProblem:
    return FieldProblem(
        name, text[:40] + "...", f"is {len(text)} characters; at most {PROMPT_MAX_CHARS}"
    )


def _unknown_field_rule(name: str) -> str:
    known = (*FIELDS, "id", "repeat")
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"is not a known field{hint}; known: {', '.join(known)}"


# --- request body and price -----------------------------------------------------------


def image_payload(request: Request) -> str:
    """The `image` value to send: URLs as they are, local files as raw base64."""
    return images.image_payload(request.image)


def build_body(request: Request, image: str) -> dict[str, Any]:
    """The JSON body of the submit call. Every setting is sent explicitly, defaults too,
    so that what was validated and priced is exactly what the API is asked for."""
    body: dict[str, Any] = {
        "image": image,
        "prompt": request.prompt,
        "duration": request.duration,
        "cfg_scale": request.cfg_scale,
        "sound": request.sound,
        "aspect_ratio": request.aspect_ratio,
    }
    if request.negative_prompt:
        body["negative_prompt"] = request.negative_prompt
    if request.voice_list:
        body["voice_list"] = [{"voice_id": voice} for voice in request.voice_list]
    return body


def price_tier(request: Request) -> str:
    if not request.sound:
        return "silent"
    return "sound_voices" if request.voice_list else "sound"


def check_prices(values: Mapping[str, Any]) -> tuple[dict[str, float], list[FieldProblem]]:
    """A price table with some tiers overridden (``prices:`` in a manifest, or
    ``--price-per-second``): known tiers, non-negative numbers."""
    table, problems = dict(PRICE_PER_SECOND), []
    for tier, value in values.items():
        name = f"prices.{tier}"
        if tier not in PRICE_PER_SECOND:
            known = ", ".join(PRICE_PER_SECOND)
            problems.append(FieldProblem(name, value, f"is not a price tier ({known})"))
        elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            problems.append(FieldProblem(name, value, "must be USD per second, e.g. 0.07"))
        else:
            table[tier] = float(value)
    return table, problems


def estimate_cost(request: Request, prices: Mapping[str, float] | None = None) -> float:
    """Estimated USD for one task: seconds times the per-second price of its tier."""
    table = {**PRICE_PER_SECOND, **(prices or {})}
    return round(request.duration * table[price_tier(request)], 4)


def fingerprint(request: Request, image_sha256: str | None) -> str:
    """A digest of everything that decides what is generated (and paid for).

    Local images count by content, not by path, so that replacing ``cat.png`` with
    another picture is seen as a changed request.
    """
    identity = request.to_json() + "|" + (image_sha256 or request.image)
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]
