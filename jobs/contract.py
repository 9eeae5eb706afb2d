"""The job contract: what one model on Novita takes, declared once, and the checks every
model shares.

A model (:class:`Model`) is a name (its path is ``/v3/async/<name>``), a kind
(image-to-video or text-to-video), its documentation page, its fields and its price
rule. A field (:class:`Field`) is its name in a manifest, its name and type on the wire
(``duration`` is the integer 5 on one model and the string "5" on another), whether it
is required, the API's default, the allowed values or range, and the other manifest
names that mean the same setting (``cfg_scale`` and ``guidance_scale``). Rules across
fields (``end_image`` or ``multi_prompt``, not both) are small functions, the shared ones
in :mod:`jobs.rules`.

Everything else is shared and written once here: reading a manifest value as the type
a field needs, prompt length, choices and ranges, the body sent, the request kept in the
ledger and its fingerprint. The image checks are in :mod:`jobs.images`. A new model is
one declaration (see ``jobs/kling_*.py``); this module imports nothing from ``runner``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from jobs.forms import ALONE, RAW_BASE64, VOICE_OBJECTS, image_as, voices_as
from jobs.problems import FieldProblem

PROMPT_MAX_CHARS = 2500  # every Kling page on Novita says so
# Names a row may hold that are no model's field: the row's own, and what it asks of its
# pictures (jobs.pictures). Offered by the did-you-mean of a name no model takes.
ROW_NAMES = ("id", "repeat", "model", "matte", "fit", "max_edge")


class Kind(StrEnum):
    IMAGE_TO_VIDEO = "image-to-video"
    TEXT_TO_VIDEO = "text-to-video"


class Wire(StrEnum):
    """What a field is, and so how a manifest value is read and how it is sent."""

    TEXT = "text"  # a string, at most PROMPT_MAX_CHARS where it is a prompt
    CHOICE = "choice"  # one of ``choices``, sent as it is
    INT = "int"  # a whole number, sent as a JSON integer
    INT_AS_TEXT = "int as text"  # a whole number, sent as a string ("5")
    NUMBER = "number"  # a number in ``range``
    BOOL = "bool"
    IMAGE = "image"  # a local file (sent as base64, forms in jobs.forms) or an http(s) URL
    VOICES = "voices"  # voice ids, sent as [{"voice_id": id}] or as they are (jobs.forms)
    SEGMENTS = "segments"  # [{prompt, duration}], for multi-shot videos


@dataclass(frozen=True)
class Field:
    name: str  # in manifests, the report and the ledger
    wire: Wire
    api_name: str = ""  # on the wire, where it differs from ``name``
    required: bool = False
    default: Any = None  # the API's documented default; None: none, not sent unless given
    choices: tuple[Any, ...] = ()
    range: tuple[float, float] | None = None
    max_items: int | None = None
    aliases: tuple[str, ...] = ()  # other manifest names for the same setting
    prompt: bool = False  # a prompt: at most PROMPT_MAX_CHARS characters
    # Its wire forms where the pages leave them open (jobs.forms), in the order tried.
    forms: tuple[str, ...] = ()

    @property
    def sent_as(self) -> str:
        return self.api_name or self.name

    def describe(self) -> str:
        """One line for ``kling-batch models``."""
        parts = [self.wire.value]
        if self.api_name:
            parts.append(f"sent as {self.api_name}")
        if self.choices:
            parts.append("one of " + ", ".join(str(c) for c in self.choices))
        if self.range:
            parts.append(f"{self.range[0]:g}..{self.range[1]:g}")
        if self.max_items:
            parts.append(f"at most {self.max_items}")
        if self.prompt:
            parts.append(f"at most {PROMPT_MAX_CHARS} characters")
        if self.required:
            parts.append("required")
        elif self.default is not None:
            parts.append(f"default {self.default!r}")
        if self.aliases:
            parts.append("also called " + ", ".join(self.aliases))
        return "; ".join(parts)


# A rule across fields: given the typed values of a task, a problem or None.
Rule = Callable[[Mapping[str, Any]], FieldProblem | None]
# A price rule: given the typed values and the price table, the tier that applies.
PriceTier = Callable[[Mapping[str, Any]], str]


@dataclass(frozen=True)
class Model:
    name: str  # the path's last part: POST /v3/async/<name>
    kind: Kind
    doc_url: str
    fields: tuple[Field, ...]
    prices: Mapping[str, float]  # USD per second of video by tier (estimates)
    tier: PriceTier
    rules: tuple[Rule, ...] = ()
    warnings: tuple[Rule, ...] = ()
    notes: str = ""  # where the pages disagree or are silent
    # The seed model's requests were stored before models had names: its JSON keeps
    # that shape (no "model" key), so old ledgers' fingerprints still match.
    legacy_json: bool = False
    by_name: dict[str, Field] = field(init=False, repr=False, compare=False)
    image_fields: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = {f.name: f for f in self.fields}
        names.update({alias: f for f in self.fields for alias in f.aliases})
        object.__setattr__(self, "by_name", names)
        images = tuple(f.name for f in self.fields if f.wire == Wire.IMAGE)
        object.__setattr__(self, "image_fields", images)  # asked once per task: kept

    @property
    def path(self) -> str:
        return f"/v3/async/{self.name}"

    def takes(self, name: str) -> bool:
        return name in self.by_name

    def check(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldProblem]]:
        """Read and check every setting but the images' content; report every problem.

        Returns the typed values (by the field's own name; aliases resolved) and the
        problems. A name the model does not take is a problem naming what it takes."""
        typed: dict[str, Any] = {}
        problems: list[FieldProblem] = []
        for name, raw in values.items():
            spec = self.by_name.get(name)
            if spec is None:
                problems.append(FieldProblem(name, raw, self._unknown(name)))
                continue
            if raw is None or raw == "":
                continue
            value = read(spec, raw)
            if isinstance(value, FieldProblem):
                problems.append(value)
            else:
                typed[spec.name] = value
        for spec in self.fields:
            if spec.required and spec.name not in typed and not _reported(problems, spec):
                problems.append(FieldProblem(spec.name, values.get(spec.name), "is required"))
        if not problems:  # rules see what is sent: a value not given is the API's default
            sent = {f.name: f.default for f in self.fields if f.default is not None} | typed
            problems += [p for rule in self.rules if (p := rule(sent)) is not None]
        return typed, problems

    def request(self, typed: Mapping[str, Any]) -> Request:
        """The request as sent: every field, given or the API's default."""
        return Request(self, {f.name: typed.get(f.name, f.default) for f in self.fields})

    def _unknown(self, name: str) -> str:
        known = sorted(self.by_name)
        close = difflib.get_close_matches(name, [*known, *ROW_NAMES], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"is not a field of {self.name}{hint}; it takes: {', '.join(known)}"


def _reported(problems: list[FieldProblem], spec: Field) -> bool:
    return any(p.field in (spec.name, *spec.aliases) for p in problems)


@dataclass(frozen=True)
class Request:
    """One fully resolved request: the model and every field's value, images still as
    references (a path or a URL; read only when sent, so memory stays flat)."""

    model: Model
    values: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        """A field's value as an attribute (``request.prompt``), for readable callers."""
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def get(self, name: str, default: Any = None) -> Any:
        value = self.values.get(name)
        return default if value is None else value

    @property
    def duration(self) -> int:
        """Seconds of video, for the price and the report (segments add up)."""
        return int(self.get("duration", 0))

    def to_json(self) -> str:
        """Canonical JSON, stored in the ledger: what the fingerprint covers."""
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in self.values.items()}
        if not self.model.legacy_json:
            data["model"] = self.model.name
        return json.dumps(data, sort_keys=True, ensure_ascii=False)

    def body(
        self, images: Mapping[str, str], forms: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """The JSON body of the submit: wire names and types; ``images`` maps each image
        field to its payload (raw base64 of a local file, or the URL); ``forms`` the
        wire form of each field that has several (``jobs.forms``; its first form when
        not given). Defaults are sent explicitly, so what was validated and priced is
        exactly what the API is asked for. A local picture in a field whose form takes
        URLs only cannot be sent: ValueError (the caller checks first)."""
        forms = forms or {}
        body: dict[str, Any] = {}
        for spec in self.model.fields:
            value = images.get(spec.name) if spec.wire == Wire.IMAGE else self.values[spec.name]
            if value is None or value == () or (spec.prompt and not spec.required and not value):
                continue
            form = forms.get(spec.name) or (spec.forms[0] if spec.forms else "")
            body[spec.sent_as] = to_wire(spec, value, form)
        if forms.get("multi_prompt") == ALONE and "multi_prompt" in body:
            body.pop(self.model.by_name["prompt"].sent_as, None)  # "mutually exclusive"
        return body

    def tier(self) -> str:
        return self.model.tier(self.values)

    def estimate(self, prices: Mapping[str, float] | None = None) -> float:
        """Estimated USD: seconds times the per-second price of the request's tier."""
        table = {**self.model.prices, **(prices or {})}
        return round(self.duration * table[self.tier()], 4)

    def fingerprint(self, image_digests: Mapping[str, str | None]) -> str:
        """A digest of everything that decides what is generated (and paid for); local
        images count by content, so a replaced ``cat.png`` is a changed request."""
        images = [
            image_digests.get(name) or self.values.get(name) or ""
            for name in self.model.image_fields
        ]
        identity = self.to_json() + "|" + "|".join(str(i) for i in images)
        return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]


# --- reading manifest values (YAML-typed, or CSV text) -------------------------------

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def read(spec: Field, raw: Any) -> Any:
    """A manifest value as the field's type, checked; or the problem with it."""
    reader = _READERS[spec.wire]
    value = reader(spec, raw)
    if isinstance(value, FieldProblem):
        return value
    if spec.choices and value not in spec.choices:
        allowed = ", ".join(str(c) for c in spec.choices)
        return FieldProblem(spec.name, raw, f"must be one of {allowed}")
    if spec.range and not spec.range[0] <= value <= spec.range[1]:  # nan fails too
        return FieldProblem(
            spec.name, value, f"must be between {spec.range[0]} and {spec.range[1]}"
        )
    if spec.max_items is not None and len(value) > spec.max_items:
        noun = "voices" if spec.wire == Wire.VOICES else "items"
        return FieldProblem(spec.name, list(value), f"at most {spec.max_items} {noun}")
    return value


def _text(spec: Field, raw: Any) -> Any:
    if not isinstance(raw, str):
        return FieldProblem(spec.name, raw, "must be text")
    if spec.prompt and len(raw) > PROMPT_MAX_CHARS:
        return FieldProblem(
            spec.name, raw[:40] + "...", f"is {len(raw)} characters; at most {PROMPT_MAX_CHARS}"
        )
    if spec.required and not raw.strip():
        return FieldProblem(spec.name, raw, "is required")
    return raw if spec.prompt else raw.strip()


def _int(spec: Field, raw: Any) -> Any:
    if isinstance(raw, bool):
        return FieldProblem(spec.name, raw, "must be a whole number")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and _WHOLE.match(raw.strip()):  # ASCII digits: not "²", "+-5"
        return int(raw.strip())
    return FieldProblem(spec.name, raw, "must be a whole number")


_WHOLE = re.compile(r"[+-]?[0-9]{1,9}\Z")


def _number(spec: Field, raw: Any) -> Any:
    if isinstance(raw, bool):
        return FieldProblem(spec.name, raw, "must be a number")
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str):
        try:
            return float(raw.strip())
        except ValueError:
            pass
    return FieldProblem(spec.name, raw, "must be a number")


def _bool(spec: Field, raw: Any) -> Any:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    return FieldProblem(spec.name, raw, "must be true or false")


def _voices(spec: Field, raw: Any) -> Any:
    if isinstance(raw, str):
        return tuple(v.strip() for v in raw.split(";") if v.strip())
    if isinstance(raw, list | tuple) and all(isinstance(v, str) and v.strip() for v in raw):
        return tuple(v.strip() for v in raw)
    return FieldProblem(spec.name, raw, "must be a list of voice ids (strings)")


def _segments(spec: Field, raw: Any) -> Any:
    """``[{prompt, duration}, …]`` (in CSV: ``prompt|seconds;prompt|seconds``)."""
    if isinstance(raw, str):
        raw = [
            {"prompt": p, "duration": d}
            for p, _, d in (part.rpartition("|") for part in raw.split(";") if part.strip())
        ]
    if not isinstance(raw, list) or not raw:
        return FieldProblem(spec.name, raw, "must be a list of {prompt, duration} segments")
    segments = []
    for item in raw:
        if not isinstance(item, dict) or set(item) - {"prompt", "duration"}:
            return FieldProblem(spec.name, item, "each segment is {prompt: text, duration: s}")
        prompt = _text(Field("prompt", Wire.TEXT, required=True, prompt=True), item.get("prompt"))
        seconds = _int(Field("duration", Wire.INT), item.get("duration"))
        for value in (prompt, seconds):
            if isinstance(value, FieldProblem):
                return FieldProblem(spec.name, item, f"segment {value.field} {value.rule}")
        segments.append({"prompt": prompt, "duration": seconds})
    return tuple(segments)


_READERS: dict[Wire, Callable[[Field, Any], Any]] = {
    Wire.TEXT: _text,
    Wire.CHOICE: lambda spec, raw: raw.strip() if isinstance(raw, str) else _text(spec, raw),
    Wire.INT: _int,
    Wire.INT_AS_TEXT: _int,
    Wire.NUMBER: _number,
    Wire.BOOL: _bool,
    Wire.IMAGE: lambda spec, raw: (
        raw.strip()
        if isinstance(raw, str)
        else FieldProblem(spec.name, raw, "must be a file path or an http(s) URL")
    ),
    Wire.VOICES: _voices,
    Wire.SEGMENTS: _segments,
}


def to_wire(spec: Field, value: Any, form: str = "") -> Any:
    """A typed value as sent, in ``form`` where the field has several (``jobs.forms``)."""
    if spec.wire == Wire.INT_AS_TEXT:
        return str(value)
    if spec.wire == Wire.IMAGE:
        sent = image_as(form or RAW_BASE64, value)
        if sent is None:
            raise ValueError(f"{spec.name}: a local picture cannot be sent as {form}")
        return sent
    if spec.wire == Wire.VOICES:
        return voices_as(form or VOICE_OBJECTS, value)
    if spec.wire == Wire.SEGMENTS:
        return [dict(segment) for segment in value]
    return value
