"""How a chain link names its first frame before it exists: ``last-frame-of:<parent key>``
in the image field. Planning counts it in the fingerprint as it is; the engine makes the
picture (``runner.media.last_frame``) once the parent's video is whole."""

from __future__ import annotations

LAST_FRAME_OF = "last-frame-of:"


def last_frame_of(parent_key: str) -> str:
    return f"{LAST_FRAME_OF}{parent_key}"


def parent_of(reference: object) -> str | None:
    """The task whose last frame ``reference`` stands for, or None."""
    if isinstance(reference, str) and reference.startswith(LAST_FRAME_OF):
        return reference.removeprefix(LAST_FRAME_OF)
    return None
