"""Wire forms that adapt, and are remembered (design.md, "Next parts").

Where Novita's pages leave a field's form open (``jobs.forms``), kling-batch sends the
first form and learns from the API's answer:

- a refusal at submit that names the field (free: nothing was created) makes it try
  the field's next form, once per form (:func:`refused_field`, :func:`next_form`:
  pure, pinned by a table test);
- a request the API took proves its forms were read (``accepted``); a canary whose
  video came whole proves its picture's form (``succeeded``);
- a canary that was taken, then failed for its picture, condemns that picture form
  (kept, so that no later run pays for it again).

What worked is kept per API and model (``runner.api.learned``: the run folder and the
user's cache), so the next folder starts with it; ``--wire field=form`` forces one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from jobs.contract import Field, Model, Request, Wire
from jobs.forms import DESCRIBED, URL_ONLY
from jobs.images import is_url
from runner.api.learned import Learned
from runner.core.causes import FailureClass, failure_class
from runner.core.errors import ApiError

log = logging.getLogger(__name__)

# What settles a form: a picture's needs its video (raw base64 may be taken, then fail
# after billing); every other field's, that the API took it (or refused all the others).
_PICTURE_PROOFS = ("succeeded", "doctor")
_PROOFS = ("accepted", "succeeded", "doctor", "refused")
FAILED_SUFFIX = "/failed"  # a learned key's sibling: picture forms condemned after billing
# A failed task's reason that points at its picture (native Kling: "Image pixel is
# invalid"): the picture's form is suspect, not the prompt.
_PICTURE_WORDS = re.compile(r"\b(image|picture|pixels?|frame)\b", re.IGNORECASE)


def refused_field(error: ApiError, model: Model, used: Collection[str]) -> str | None:
    """The field with several forms that a refusal at submit names, among the fields
    the request ``used`` (manifest names), or None: when it names none of them, or
    refuses the content (moderation: sent in any form, it is refused again). A field is
    named by its manifest name, its wire name or an alias, as a whole word; the one
    named first wins ("end_image: must be an image URL" names end_image); an
    ``INVALID_IMAGE_*`` code that names no field points at the first frame."""
    text = f"{error.reason} {error.message}"
    if failure_class(text) == FailureClass.MODERATION:
        return None
    named = [
        (at, spec.name)
        for spec in model.fields
        if spec.forms and spec.name in used
        for name in _spellings(spec)
        if (at := _named_at(text, name)) is not None
    ]
    if named:
        return min(named)[1]
    images = [f.name for f in model.fields if f.wire == Wire.IMAGE and f.forms]
    if error.reason.startswith("INVALID_IMAGE") and images and images[0] in used:
        return images[0]
    return None


def next_form(spec: Field, tried: Collection[str]) -> str | None:
    """The field's next form not tried yet, in its declared order; None: all were."""
    return next((form for form in spec.forms if form not in tried), None)


def names_the_picture(reason: str) -> bool:
    """Whether a failed task's reason points at its picture (not at its content)."""
    return bool(_PICTURE_WORDS.search(reason)) and (
        failure_class(reason) != FailureClass.MODERATION
    )


def fields_with_forms(request: Request) -> list[str]:
    """The fields of ``request`` whose form is open and that it sends: a picture given
    as a local file (a URL travels as it is), voices, multi-shot segments."""
    used = []
    for spec in request.model.fields:
        value = request.values.get(spec.name)
        if spec.forms and value and not (spec.wire == Wire.IMAGE and is_url(str(value))):
            used.append(spec.name)
    return used


@dataclass(frozen=True)
class Adaptation:
    """What a refusal that names a field leads to: the form refused, and the next one
    (None: every form was refused, or the form was forced)."""

    field: str
    refused: str
    next: str | None

    def describe(self) -> str:
        if self.next is None:
            return f"{self.field} was refused as {DESCRIBED.get(self.refused, self.refused)}"
        return (
            f"{self.field} was refused as {DESCRIBED.get(self.refused, self.refused)}; "
            f"trying {DESCRIBED.get(self.next, self.next)} (free: nothing was created)"
        )


class WireForms:
    """The form each field goes in, per model, for one run: ``--wire`` first, then what
    was learned of the API, then the field's first form not condemned; and what the
    run learns, told to ``learned``."""

    def __init__(self, learned: Learned, forced: Mapping[str, str] | None = None):
        self.learned = learned
        self.forced = dict(forced or {})  # "field" or "model.field" -> form
        self._refused: dict[str, set[str]] = {}  # key -> forms refused this run
        self._current: dict[str, str] = {}

    def form(self, model: Model, spec: Field) -> str:
        key = _key(model, spec)
        forced = self._forced(model, spec)
        if forced:
            return forced
        if key in self._current:
            return self._current[key]
        learned = self.learned.value(key)
        if learned in spec.forms:
            return learned
        condemned = set((self.learned.value(key + FAILED_SUFFIX) or "").split(","))
        return next_form(spec, condemned) or spec.forms[0]

    def forms_for(self, model: Model) -> dict[str, str]:
        return {spec.name: self.form(model, spec) for spec in model.fields if spec.forms}

    def settled(self, model: Model, name: str) -> bool:
        """Whether the field's form is known for this API: forced, or learned with a
        proof that holds (a picture's: its video came whole; the rest: accepted)."""
        spec = model.by_name[name]
        if self._forced(model, spec):
            return True
        fact = self.learned.get(_key(model, spec))
        if fact is None or fact.value != self.form(model, spec):
            return False
        picture = spec.wire == Wire.IMAGE and fact.value != URL_ONLY
        return fact.proof in (_PICTURE_PROOFS if picture else _PROOFS)

    def unsendable(self, model: Model, used: Collection[str]) -> str | None:
        """Why a request cannot be sent at all (a local picture where the API takes a
        URL only), or None."""
        for name in used:
            spec = model.by_name[name]
            if spec.wire == Wire.IMAGE and self.form(model, spec) == URL_ONLY:
                return (
                    f"{name}: the API takes it as an http(s) URL only (it refused a local "
                    f"picture as raw base64 and as a data URI): give {name} a URL, or leave "
                    "it out; nothing was paid"
                )
        return None

    def after_refusal(
        self, model: Model, error: ApiError, used: Collection[str]
    ) -> Adaptation | None:
        """A refusal at submit: the next form of the field it names, or None when it names
        none. A forced form is never changed."""
        name = refused_field(error, model, used)
        if name is None:
            return None
        spec = model.by_name[name]
        key = _key(model, spec)
        refused = self.form(model, spec)
        tried = self._refused.setdefault(key, set())
        tried.add(refused)
        upcoming = None if self._forced(model, spec) else next_form(spec, tried)
        if upcoming is not None:
            self._current[key] = upcoming
            if upcoming == URL_ONLY:  # nothing else was taken: a local picture cannot go
                self.learned.learn(key, URL_ONLY, "refused")
        return Adaptation(name, refused, upcoming)

    def picture_failed(self, model: Model, name: str) -> Adaptation | None:
        """A canary was taken, then failed for its picture: that form is condemned
        (kept: no later run pays for it again) and the next is tried; None when the
        form was forced or no other form is left."""
        spec = model.by_name[name]
        key = _key(model, spec)
        failed = self.form(model, spec)
        condemned = set(filter(None, (self.learned.value(key + FAILED_SUFFIX) or "").split(",")))
        condemned.add(failed)
        self.learned.learn(key + FAILED_SUFFIX, ",".join(sorted(condemned)), "seen")
        upcoming = None if self._forced(model, spec) else next_form(spec, condemned | {URL_ONLY})
        if upcoming is None:
            return None
        self._current[key] = upcoming
        return Adaptation(name, failed, upcoming)

    def accepted(self, model: Model, used: Collection[str]) -> None:
        self._prove(model, used, "accepted")

    def succeeded(self, model: Model, used: Collection[str]) -> None:
        self._prove(model, used, "succeeded")

    def _prove(self, model: Model, used: Collection[str], proof: str) -> None:
        for name in used:
            spec = model.by_name[name]
            if not self._forced(model, spec):
                self.learned.learn(_key(model, spec), self.form(model, spec), proof)

    def _forced(self, model: Model, spec: Field) -> str | None:
        for name in (spec.name, *spec.aliases):
            forced = self.forced.get(f"{model.name}.{name}") or self.forced.get(name)
            if forced:
                return forced
        return None


def _key(model: Model, spec: Field) -> str:
    return f"{model.name}/{spec.name}"


def _spellings(spec: Field) -> set[str]:
    return {spec.name, spec.sent_as, *spec.aliases}


def _named_at(text: str, name: str) -> int | None:
    """Where ``text`` first names ``name`` as a whole word, or None."""
    found = re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text, re.I)
    return found.start() if found else None
