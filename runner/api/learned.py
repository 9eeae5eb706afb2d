"""What first contact taught kling-batch about an API, kept where the next run finds it.

Novita's pages leave some of the wire open (shared/novita-api.md, "What the pages leave
open"): how a local image travels, the shape of ``voice_list`` items, whether Task
Result signs a video link anew. Each answer, once a real task settles it, is a *fact*:
a key (``kling-v2.6-pro-i2v/image`` for a wire form, ``links`` for the links), a value,
how it is known (its proof) and when.

Facts are per API (a base URL, by :func:`api_identity`) and kept in two places: the run
folder's ledger (meta ``learned``: what this folder sent, so a resume sends the same)
and the user's cache (``learned.json``, beside the pictures' cache), so that the next
folder starts from what the last one learned. The folder's own facts win. The cache is
a help, never a need: one that cannot be read or written is no cache.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runner.core.api_identity import api_identity
from runner.core.atomic import write_text_atomically
from runner.core.user_cache import user_cache_dir
from runner.ledger.file import Ledger, LedgerReads

log = logging.getLogger(__name__)

LEARNED_FILE = "learned.json"
META_KEY = "learned"
LINKS = "links"  # whether Task Result signs a video link anew: SIGNS_ANEW or SAME_LINK
SIGNS_ANEW = "signs anew"
SAME_LINK = "same link"


@dataclass(frozen=True)
class Fact:
    """One thing learned: ``value``, and ``proof``: how it is known (``succeeded``: a
    task sent so made its video; ``accepted``: the API took a request sent so;
    ``refused``: every other form was refused; ``forced``: the user said so with
    ``--wire``; ``seen``: observed in an answer; ``doctor``: settled by ``doctor``)."""

    value: str
    proof: str
    at: float


class Learned:
    """The facts about one API, read from the folder and the user's cache, and written
    to both as they are learned. Use it from the event loop's thread only (the ledger)."""

    def __init__(
        self,
        api: str,
        facts: Mapping[str, Fact] | None = None,
        ledger: Ledger | None = None,
        cache_file: Path | None = None,
    ):
        self.api = api_identity(api)
        self._facts = dict(facts or {})
        self._ledger = ledger
        self._cache_file = cache_file

    @classmethod
    def of_folder(cls, ledger: LedgerReads) -> Learned:
        """What a folder's ledger holds alone, for its readers: nothing is written back."""
        return cls("", _facts_of(_json_object(ledger.meta().get(META_KEY))), None, None)

    @classmethod
    def open(
        cls,
        api: str,
        ledger: Ledger | None = None,
        *,
        use_cache: bool = True,
        env: Mapping[str, str] = os.environ,
    ) -> Learned:
        """What is known of ``api``: the user's cache, then the folder's ledger over it.
        ``use_cache`` False keeps the facts in the folder only (a rehearsal's embedded
        simulator, whose readings are its own)."""
        cache_file = user_cache_dir(env) / LEARNED_FILE if use_cache else None
        facts = _facts_of(_read_cache(cache_file).get(api_identity(api), {}))
        if ledger is not None:
            facts.update(_facts_of(_json_object(ledger.meta().get(META_KEY))))
        return cls(api, facts, ledger, cache_file)

    def get(self, key: str) -> Fact | None:
        return self._facts.get(key)

    def value(self, key: str) -> str | None:
        fact = self._facts.get(key)
        return fact.value if fact else None

    def items(self) -> list[tuple[str, Fact]]:
        return sorted(self._facts.items())

    def learn(self, key: str, value: str, proof: str) -> bool:
        """Keep a fact (in the folder, durably, and in the user's cache); returns
        whether it was news. A weaker proof never replaces a stronger one."""
        known = self._facts.get(key)
        if known is not None and known.value == value and _rank(known.proof) >= _rank(proof):
            return False
        fact = Fact(value, proof, time.time())
        self._facts[key] = fact
        if self._ledger is not None and not self._ledger.closed:
            self._ledger.set_meta(**{META_KEY: json.dumps(_plain(self._facts), sort_keys=True)})
        self._write_cache(key, fact)
        log.info("learned of %s: %s = %s (%s)", self.api, key, value, proof)
        return True

    def _write_cache(self, key: str, fact: Fact) -> None:
        if self._cache_file is None:
            return
        try:
            everything = _read_cache(self._cache_file)
            everything.setdefault(self.api, {})[key] = asdict(fact)
            self._cache_file.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomically(self._cache_file, json.dumps(everything, indent=1) + "\n")
        except OSError as exc:  # a cache that cannot be written is no cache
            log.debug("could not write %s: %s", self._cache_file, exc)


_PROOF_RANK = {"seen": 0, "accepted": 1, "refused": 1, "succeeded": 2, "doctor": 2, "forced": 3}


def _rank(proof: str) -> int:
    return _PROOF_RANK.get(proof, 0)


def _plain(facts: Mapping[str, Fact]) -> dict[str, dict[str, Any]]:
    return {key: asdict(fact) for key, fact in sorted(facts.items())}


def _facts_of(data: Mapping[str, Any]) -> dict[str, Fact]:
    """Facts from JSON; anything malformed is left out (a cache written by hand)."""
    facts = {}
    for key, value in data.items():
        try:
            facts[str(key)] = Fact(str(value["value"]), str(value["proof"]), float(value["at"]))
        except (KeyError, TypeError, ValueError):
            continue
    return facts


def _read_cache(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        return _json_object(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return {}


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        data = json.loads(text or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
