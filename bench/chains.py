"""Chains at 1080p: the last frame a link starts from, and the film of a chain of four.

A 10 s 1080p H.264 video at 24 fps with a keyframe every 2 s (``bench.bench``'s, a
moving texture) stands for each link. Timed: the exact last frame (a seek to the last
keyframe, then decoding to the end) against 150 ms, the link's whole first frame
(decoded, saved as a lossless PNG and checked) beside it, and the join of four such
clips without re-encoding against 0.5 s. Each is the best of a few tries (the
machine's other work is not the code's). A crossfade re-encodes every frame: ~37 s for
these 40 s of 1080p on 2 cores, not timed here."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.bench import _full_hd_video
from runner.media.last_frame import last_frame, make_link_frame
from runner.media.stitch import stitch

TARGET_LAST_FRAME_S = 0.150
TARGET_STITCH_S = 0.5
TRIES = 5


def best_of(action: Callable[[], object], tries: int = TRIES) -> float:
    times = []
    for _ in range(tries):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="kling-chains-"))
    try:
        print("\nchains: a 1080p 10 s link (24 fps, a keyframe every 2 s) ...", flush=True)
        clip = _full_hd_video(folder / "link1.mp4")
        clips = [clip]
        for index in range(2, 5):
            clips.append(folder / f"link{index}.mp4")
            shutil.copy(clip, clips[-1])
        last = best_of(lambda: last_frame(clip))

        def first_frame_of_link() -> None:
            for made in (folder / "images").glob("*"):
                made.unlink()
            make_link_frame(folder, clip)

        link_frame = best_of(first_frame_of_link)
        joined = best_of(lambda: stitch(clips, folder / "film.mp4"))
        film = stitch(clips, folder / "film.mp4")
        print(
            f"last frame of a link: {last * 1000:.0f} ms "
            f"({last / TARGET_LAST_FRAME_S:.2f}x the target {TARGET_LAST_FRAME_S * 1000:.0f} ms); "
            f"as a checked PNG first frame: {link_frame * 1000:.0f} ms"
        )
        print(
            f"film of a chain of four ({film.seconds:.1f} s, {film.why}): {joined:.3f} s "
            f"({joined / TARGET_STITCH_S:.2f}x the target {TARGET_STITCH_S:g} s)"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
