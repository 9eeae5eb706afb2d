"""Chains: a task whose first frame is the exact last frame of another task's video.

Two ways to write one, in YAML or CSV alike:

- ``after: ROW``: this row continues row ``ROW`` (a row above it, which makes one task,
  or a chain row, whose last link it continues). It gives no ``image``: its first
  frame is its parent's last.
- ``chain: [prompt, prompt, ...]`` (YAML): one row, one link per prompt, each continuing
  the one before; the row's ``image`` is the first link's first frame.

A chain is linear: a task is continued at most once. A link is planned like any task
(its settings checked, its price counted) with its first frame standing for "the
parent's last frame" (``runner.media.last_frame.last_frame_of``): the picture itself
exists only once the parent's video is downloaded and whole (``runner.media.last_frame``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from runner.manifest.rows import Problem, TaskSpec
from runner.media.chain_refs import last_frame_of

CHAIN = "chain"  # the short form: a row's prompts, each continuing the last


def link(specs: Sequence[TaskSpec]) -> tuple[list[TaskSpec], list[Problem]]:
    """Each spec with its parent and chain set (and its first frame standing for its
    parent's last), plus what is wrong with the chains as written."""
    linker = _Linker()
    by_row: dict[str, list[TaskSpec]] = {}
    for spec in specs:
        by_row.setdefault(spec.row_id, []).append(spec)
    for row_specs in by_row.values():
        if any(CHAIN in s.values for s in row_specs):
            row_specs = linker.chain_row(row_specs)
        elif row_specs[0].after is not None:
            row_specs = linker.after_row(row_specs)
        linker.done(row_specs)
    return linker.named(), linker.problems


@dataclass
class _Linker:
    def __post_init__(self) -> None:
        self.out: list[TaskSpec] = []
        self.problems: list[Problem] = []
        self.last_of_row: dict[str, TaskSpec] = {}  # a row above: its (last) task
        self.continued: dict[str, str] = {}  # parent key -> the row continuing it

    def chain_row(self, specs: list[TaskSpec]) -> list[TaskSpec]:
        first = specs[0]
        if "prompt" in first.values and "prompt" not in first.defaulted:
            return self._refuse(specs, CHAIN, "a chain row's prompts are its chain: give no prompt")
        if first.after is not None:
            return self._refuse(specs, "after", "a chain row starts from its own image")
        rest = [{k: v for k, v in spec.values.items() if k != CHAIN} for spec in specs]
        if any(other != rest[0] for other in rest):  # expanded by another list too
            return self._refuse(specs, CHAIN, "a chain row expands by its prompts only")
        linked: list[TaskSpec] = []
        for spec in specs:
            values = {k: v for k, v in spec.values.items() if k != CHAIN}
            values["prompt"] = spec.values[CHAIN]
            parent = linked[-1].key if linked else None
            if parent is not None:
                values["image"] = last_frame_of(parent)
            linked.append(replace(spec, values=values, parent=parent))
        return linked

    def after_row(self, specs: list[TaskSpec]) -> list[TaskSpec]:
        spec, wanted = specs[0], specs[0].after or ""
        if len(specs) != 1:
            return self._refuse(specs, "after", "a link is one task: no list, no repeat")
        if "image" in spec.values and "image" not in spec.defaulted:
            return self._refuse(
                specs, "image", "a link's first frame is its parent's last frame: give no image"
            )
        parent = self.last_of_row.get(wanted)
        if parent is None:
            return self._refuse(specs, "after", f"names no row above this one ({wanted!r})")
        if parent.key in self.continued:
            taken = self.continued[parent.key]
            return self._refuse(specs, "after", f"{parent.key} is continued already (by {taken})")
        self.continued[parent.key] = spec.row_id
        values = {**spec.values, "image": last_frame_of(parent.key)}
        return [replace(spec, values=values, parent=parent.key)]

    def done(self, specs: list[TaskSpec]) -> None:
        for spec in specs:
            if spec.parent is not None:
                self.continued.setdefault(spec.parent, spec.row_id)
        if specs:
            self.last_of_row[specs[0].row_id] = specs[-1]
        self.out.extend(specs)

    def named(self) -> list[TaskSpec]:
        """Each task of a chain with its chain's name: the row id of its first link."""
        by_key = {spec.key: spec for spec in self.out}
        chained = {s.key for s in self.out if s.parent is not None} | {
            s.parent for s in self.out if s.parent is not None
        }
        named = []
        for spec in self.out:
            if spec.key not in chained:
                named.append(spec)
                continue
            root = spec
            while root.parent is not None and root.parent in by_key:
                root = by_key[root.parent]
            named.append(replace(spec, chain=root.row_id))
        return named

    def _refuse(self, specs: list[TaskSpec], field: str, rule: str) -> list[TaskSpec]:
        spec = specs[0]
        value: Any = spec.values.get(field) if field != "after" else spec.after
        self.problems.append(
            Problem(
                file=spec.file, row=spec.row_id, line=spec.line, field=field, value=value, rule=rule
            )
        )
        return []


@dataclass(frozen=True)
class ChainSummary:
    """One chain as ``validate`` shows it."""

    name: str
    keys: tuple[str, ...]
    seconds: int
    usd: float
