"""What the command line says of chains, films and a redo of the rejected: each chain as
``validate`` prices it, each film made (or why a chain has none), what a redo sends."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from runner.cli.status_words import say
from runner.manifest.plan import Plan
from runner.run.films import FilmResult
from runner.run.redo import Redo


def chains(result: Plan) -> None:
    """Each chain: its links, its length and its price (every link counted)."""
    for chain in result.chains:
        links = " -> ".join(chain.keys)
        say(
            f"  chain {chain.name}: {len(chain.keys)} links, {chain.seconds} s, "
            f"~ ${chain.usd:,.2f}: {links}"
        )


def films(run_dir: Path, results: Sequence[FilmResult]) -> None:
    """Each film made (its length and how it was joined), or why a chain has none."""
    for result in results:
        if result.film is None:
            say(f"chain {result.chain}: no film yet: {', '.join(result.missing)} without a video")
            continue
        film = result.film
        how = "made before from the same videos" if result.kept else film.why
        shown = film.path.relative_to(run_dir) if film.path.is_relative_to(run_dir) else film.path
        say(f"film {shown}: {len(result.links)} clip(s), {film.seconds:.1f} s, {how}")
        for note in film.notes:
            say(f"  note: {note}")


def rejected(redo: Redo) -> None:
    """What ``rerun --rejected`` makes again, and what it leaves to ``resume``."""
    rejected = len(redo.tasks) - redo.links
    links = f", and {redo.links} chain link(s) made from them" if redo.links else ""
    say(f"{rejected} rejected task(s) to make again, {redo.edited} with edits{links}")
    if redo.busy:
        keys = ", ".join(r.task_key for r in redo.busy[:10])
        say(f"{len(redo.busy)} rejected task(s) are at work again, left alone: {keys}")
