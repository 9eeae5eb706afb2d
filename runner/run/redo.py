"""What a redo of the rejected tasks sends: each rejected task with its edits applied
and checked, or why an edit cannot be sent. One rule for ``rerun --rejected`` and the
review page's redo button, so both price and send the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.core.records import SETTLED, Review, TaskRecord, Verdict
from runner.ledger.file import LedgerReads
from runner.manifest.redo import revised
from runner.manifest.rows import Problem


@dataclass(frozen=True)
class RedoEstimate:
    """What a redo would send and cost, as a person saw it before saying yes: a redo
    goes ahead only while it is still this (a task judged since is not paid unseen)."""

    keys: tuple[str, ...]
    usd: float
    edited: int


@dataclass
class Redo:
    tasks: list[TaskRecord] = field(default_factory=list)  # as they will be sent
    problems: list[Problem] = field(default_factory=list)  # edits that cannot be sent
    busy: list[TaskRecord] = field(default_factory=list)  # rejected, but at work again
    edited: int = 0  # tasks sent with a changed request
    links: int = 0  # chain links made from them, made again after them

    @property
    def estimate(self) -> RedoEstimate:
        usd = round(sum(t.est_cost_usd for t in self.tasks), 2)
        return RedoEstimate(tuple(sorted(t.task_key for t in self.tasks)), usd, self.edited)


Revise = Callable[[TaskRecord, Mapping[str, Any]], "TaskRecord | list[Problem]"]


def rejected_redo(
    state: LedgerReads,
    reviews: Mapping[str, Review] | None = None,
    revise: Revise = revised,
) -> Redo:
    """The rejected tasks (judged on their latest attempt), each revised by its edits,
    in the ledger's order. ``reviews``: the ledger's, when the caller has read them;
    ``revise``: how an edit is checked (the review page keeps each answer)."""
    reviews = state.reviews() if reviews is None else reviews
    rejected = [key for key, review in reviews.items() if review.verdict == Verdict.REJECTED]
    redo = Redo()
    for record in sorted(map(state.get, rejected), key=lambda r: r.position):
        if record.status not in SETTLED:
            redo.busy.append(record)
            continue
        edits = dict(reviews[record.task_key].edits)
        made = revise(record, edits) if edits else record
        if isinstance(made, list):
            redo.problems.extend(made)
        else:
            redo.tasks.append(made)
            redo.edited += made.fingerprint != record.fingerprint
    links = made_links(redo.tasks, state.links_by_parent().get) if redo.tasks else []
    redo.tasks += links
    redo.links = len(links)
    return redo


def made_links(
    redone: Sequence[TaskRecord], link_of: Callable[[str], TaskRecord | None]
) -> list[TaskRecord]:
    """The chain links already made from the tasks made again (``link_of``: a task's
    link, if one continues it), down each chain, each once, as they are: a parent made
    again makes new links, never a mix of an old and a new take. Links not made yet
    need nothing: they wait for their parent as it is."""
    taken = {record.task_key for record in redone}
    links = []
    for record in redone:
        link = link_of(record.task_key)
        while link is not None and link.status in SETTLED and link.parent_video:
            if link.task_key not in taken:
                taken.add(link.task_key)
                links.append(link)
            link = link_of(link.task_key)
    return links
