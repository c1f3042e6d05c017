"""The per-epoch report of unusable and short videos (``OUT_DIR/bad_videos.jsonl``).

    log = BadVideoLog(out_dir / "bad_videos.jsonl")
    for batch in loader:
        log.update(batch["bad"], batch["short"])
    summary = log.end_epoch(epoch)

``summary``: ``{"epoch", "count" (distinct unusable videos), "replacements" (items that needed
a stand-in), "videos": [{"path", "reason", "times", "replaced_by": {path: times}}],
"short_count", "short": [{"path", "note", "times"}]}`` — "short" are videos used although they
are shorter than one clip (their last frame repeats). Entries come from the dataset's items:
``"path: reason (replaced by other)"`` and ``"path: N frames, clip needs S (...)"``.
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter, defaultdict
from pathlib import Path

log = logging.getLogger("mgm.data")

_REPLACED = " (replaced by "


def parse_bad(entry: str) -> tuple[str, str, str]:
    """``"path: reason (replaced by other)"`` -> (path, reason, other); other is "" if absent."""
    path, sep, rest = str(entry).partition(": ")
    if not sep:
        return path, "unreadable", ""
    reason, found, used = rest.rpartition(_REPLACED)
    if found and used.endswith(")"):
        return path, reason, used[:-1]
    return path, rest, ""


class BadVideoLog:
    """Counts and names, per epoch, the videos replaced (and by what) and the short videos used.
    Logs each unusable video once per run (warning) and each epoch's summary; appends the
    summary as one JSON line to ``path`` when given."""

    def __init__(self, path: str | os.PathLike | None = None, logger: logging.Logger | None = None):
        self.path = Path(path) if path else None
        self.log = logger or log
        self.total: dict[str, str] = {}      # every unusable video seen in this run -> reason
        self._clear()

    def _clear(self) -> None:
        self._times: Counter = Counter()
        self._reason: dict[str, str] = {}
        self._by: dict[str, Counter] = defaultdict(Counter)
        self._short: Counter = Counter()
        self._short_note: dict[str, str] = {}

    def update(self, bad, short=()) -> None:
        for entry in bad or ():
            path, reason, used = parse_bad(entry)
            if path not in self.total:
                self.log.warning("bad video %s (%s)%s", path, reason, f"; replaced by {used}" if used else "")
            self._times[path] += 1
            self._reason[path] = self.total[path] = reason
            if used:
                self._by[path][used] += 1
        for entry in short or ():
            path, _, note = str(entry).partition(": ")
            self._short[path] += 1
            self._short_note[path] = note

    def end_epoch(self, epoch: int) -> dict:
        videos = [{"path": p, "reason": self._reason[p], "times": n, "replaced_by": dict(self._by[p])}
                  for p, n in sorted(self._times.items())]
        short = [{"path": p, "note": self._short_note[p], "times": n} for p, n in sorted(self._short.items())]
        summary = {"epoch": int(epoch), "count": len(videos),
                   "replacements": int(sum(self._times.values())), "videos": videos,
                   "short_count": len(short), "short": short}
        if videos:
            names = ", ".join(f"{v['path']} ({v['reason']}) -> {', '.join(v['replaced_by']) or '?'}"
                              for v in videos[:20])
            more = f" and {len(videos) - 20} more" if len(videos) > 20 else ""
            self.log.warning("epoch %d: %d bad videos replaced %d times: %s%s", epoch, len(videos),
                             summary["replacements"], names, more)
        else:
            self.log.info("epoch %d: no bad videos", epoch)
        if short:
            self.log.info("epoch %d: %d videos shorter than one clip used (last frame repeated)",
                          epoch, len(short))
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(json.dumps(summary) + "\n")
        self._clear()
        return summary

    # the counts of an epoch in progress travel in the training checkpoint (plain types only)
    def state_dict(self) -> dict:
        return {"total": dict(self.total), "times": dict(self._times), "reason": dict(self._reason),
                "by": {p: dict(c) for p, c in self._by.items()}, "short": dict(self._short),
                "short_note": dict(self._short_note)}

    def load_state_dict(self, st: dict) -> None:
        self._clear()
        self.total = dict(st.get("total", {}))
        self._times.update(st.get("times", {}))
        self._reason.update(st.get("reason", {}))
        for p, c in st.get("by", {}).items():
            self._by[p].update(c)
        self._short.update(st.get("short", {}))
        self._short_note.update(st.get("short_note", {}))
