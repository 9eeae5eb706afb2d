"""Rules and price rules that several models share: two fields not used together,
multi-shot segments that fill the duration, voices that need sound, price by sound.
A model declares which of them it takes (``jobs/kling_*.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobs.contract import Rule
from jobs.problems import FieldProblem


def not_both(first: str, second: str) -> Rule:
    def rule(values: Mapping[str, Any]) -> FieldProblem | None:
        if values.get(first) and values.get(second):
            return FieldProblem(second, None, f"cannot be used together with {first}")
        return None

    return rule


def segments_fill_duration(values: Mapping[str, Any]) -> FieldProblem | None:
    """Multi-shot segments add up to the video's duration (each at least a second)."""
    segments = values.get("multi_prompt")
    if not segments:
        return None
    short = [s["duration"] for s in segments if s["duration"] < 1]
    if short:
        return FieldProblem("multi_prompt", short, "each segment lasts at least 1 second")
    total = sum(s["duration"] for s in segments)
    if "duration" in values and total != values["duration"]:
        return FieldProblem(
            "multi_prompt",
            total,
            f"segments add up to {total}s, duration is {values['duration']}s "
            f"(set duration: {total}, or change the segments)",
        )
    return None


def voices_need_sound(values: Mapping[str, Any]) -> FieldProblem | None:
    """A warning: voices with sound off are ignored by the API."""
    if values.get("voice_list") and not values.get("sound"):
        voices = list(values["voice_list"])
        return FieldProblem("voice_list", voices, "voices are ignored: sound is off")
    return None


def price_by_sound(values: Mapping[str, Any]) -> str:
    if not values.get("sound"):
        return "silent"
    return "sound_voices" if values.get("voice_list") else "sound"


def flat_price(values: Mapping[str, Any]) -> str:
    return "standard"
