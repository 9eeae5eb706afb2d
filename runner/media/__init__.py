"""Pictures in and videos out: pictures read, checked and converted on every core (and
their cache), the MP4 box walk, what a download is, and what goes beside a video
(poster, frames, tags, story).
"""
