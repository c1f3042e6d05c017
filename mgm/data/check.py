"""Validate a dataset up front (``mgm data check``).

Per video: open and probe it (codec, size, fps, frame count, motion vectors), decode its
first frame, and with ``deep=True`` decode it to the end (finds truncated files and
decoder errors in the middle). Findings:

- bad (excluded from a cleaned list): missing, empty, unreadable or undecodable files,
  no video stream, fewer than ``min_frames`` frames;
- warnings (kept): a codec without motion vectors (VP9, HEVC, AV1, ...: the loader falls
  back to optical flow; ``mgm data transcode`` makes H.264 copies), fewer frames than
  one clip spans (``span``: its indices repeat the last frame), a deep decode that ended
  early (truncated: the frames that are there are used).
"""
from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

import av

from mgm.data.annotations import Annotations, Sample, load_annotations, write_list
from mgm.data.parallel import progress_map
from mgm.video import VideoError, probe_video, read_clip


def check_video(path: str, min_frames: int = 16, span: int = 0, deep: bool = False) -> dict:
    """One video's record: path, ok, reason (if bad), warnings, codec, width, height, fps,
    num_frames, duration, has_motion_vectors."""
    rec: dict = {"path": path, "ok": False, "reason": "", "warnings": []}
    try:
        info = probe_video(path)      # missing, empty, not a video: VideoError(path, reason)
        rec.update(codec=info.codec, width=int(info.width), height=int(info.height),
                   fps=float(info.fps or 0), num_frames=int(info.num_frames or 0),
                   has_motion_vectors=bool(info.has_motion_vectors))
        rec["duration"] = round(rec["num_frames"] / rec["fps"], 3) if rec["fps"] > 0 else None
        clip = read_clip(path, num_frames=1, stride=1, indices=[0], motion="none")
        if clip.frames is None or len(clip.frames) == 0:
            raise VideoError(path, "decoded no frames")
        if deep:
            decoded = _decode_all(path)
            if decoded < rec["num_frames"]:
                rec["warnings"].append(f"truncated: decoded {decoded} of {rec['num_frames']} frames")
            rec["num_frames"] = decoded if decoded else rec["num_frames"]
        if rec["num_frames"] < min_frames:
            needs = f", clip needs {span}" if span > rec["num_frames"] else ""
            raise VideoError(path, f"too short: {rec['num_frames']} frames{needs} "
                                   f"(--min-frames {min_frames})")
        if not rec["has_motion_vectors"]:
            rec["warnings"].append(f"no motion vectors ({rec['codec']}): optical-flow fallback; "
                                   "`mgm data transcode` makes H.264 copies")
        if span and rec["num_frames"] < span:
            rec["warnings"].append(f"short: {rec['num_frames']} frames, clip needs {span} "
                                   "(the last frame repeats)")
        rec["ok"] = True
    except VideoError as e:
        rec["reason"] = e.reason
    except Exception as e:  # noqa: BLE001 - a checker reports, never crashes
        rec["reason"] = f"{type(e).__name__}: {_strip(str(e), path)}"
    return rec


def _strip(msg: str, path: str) -> str:
    for p in (f"{path}: ", path):
        if msg.startswith(p):
            return msg[len(p):].strip() or "unreadable"
    return msg.splitlines()[0] if msg else "unreadable"


def _decode_all(path: str) -> int:
    """Frames decodable to the end; raises on a decoder error."""
    n = 0
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for _ in c.decode(s):
            n += 1
    return n


def _check_job(args):
    return check_video(*args)


def check_dataset(
    source: str, root: str = "", format: str = "auto", workers: int = 1, min_frames: int = 16,
    span: int = 0, deep: bool = False, progress: bool = True, split: str = "train",
    splits: str = "", split_id: int = 1,
) -> tuple[dict, Annotations, list[dict]]:
    """Check every video of an annotation source. Returns (report, annotations, records)."""
    ann = load_annotations(source, root=root, format=format, split=split, splits=splits,
                           split_id=split_id)
    jobs = [(s.path, min_frames, span, deep) for s in ann.samples]
    chunksize = max(1, min(16, len(jobs) // (max(workers, 1) * 8)))
    records = list(progress_map(_check_job, jobs, workers=workers, desc="check",
                                progress=progress, chunksize=chunksize))
    return summarize(records, ann), ann, records


def summarize(records: list[dict], ann: Annotations) -> dict:
    good = [r for r in records if r["ok"]]
    durations = [r["duration"] for r in good if r.get("duration")]
    frames = [r["num_frames"] for r in good]
    warn_kinds = Counter(w.split(":")[0] for r in good for w in r["warnings"])

    def stats(xs):
        if not xs:
            return None
        return {"min": round(min(xs), 3), "median": round(statistics.median(xs), 3),
                "mean": round(statistics.fmean(xs), 3), "max": round(max(xs), 3),
                "total": round(sum(xs), 3)}

    return {
        "source": ann.source, "format": ann.format, "total": len(records), "ok": len(good),
        "bad": [{"path": r["path"], "reason": r["reason"]} for r in records if not r["ok"]],
        "warnings": [{"path": r["path"], "reason": w} for r in good for w in r["warnings"]],
        "warning_counts": dict(warn_kinds),
        "codecs": dict(Counter(r.get("codec", "?") for r in good)),
        "no_motion_vectors": sum(1 for r in good if not r.get("has_motion_vectors")),
        "resolutions": dict(Counter(f"{r['width']}x{r['height']}" for r in good).most_common(10)),
        "duration_s": stats(durations),
        "frames": stats(frames),
        "num_classes": ann.num_classes,
    }


def write_clean(path: str, ann: Annotations, records: list[dict], root: str = "") -> int:
    """Write the good videos as a VideoMAE list (``path label``; paths relative to ``root``
    when given, else absolute). Returns the number of lines."""
    keep = [Sample(str(Path(s.path) if root else Path(s.path).resolve()), s.label)
            for s, r in zip(ann.samples, records) if r["ok"]]
    write_list(path, keep, root=root)
    if ann.classes and not all(c == str(i) for i, c in enumerate(ann.classes)):
        names = Path(path).parent / "classes.txt"
        if not names.exists():
            names.write_text("\n".join(ann.classes) + "\n")
    return len(keep)


def format_report(rep: dict, max_list: int = 50) -> str:
    lines = [f"{rep['source']} ({rep['format']}): {rep['total']} videos, {rep['ok']} ok, "
             f"{len(rep['bad'])} bad, {len(rep['warnings'])} warnings"]
    if rep["codecs"]:
        lines.append("codecs: " + ", ".join(f"{k} {v}" for k, v in sorted(rep["codecs"].items())))
    if rep["no_motion_vectors"]:
        lines.append(f"{rep['no_motion_vectors']} videos have no codec motion vectors "
                     "(optical-flow fallback; `mgm data transcode` re-encodes to H.264)")
    if rep["duration_s"]:
        d = rep["duration_s"]
        lines.append(f"duration s: min {d['min']} median {d['median']} max {d['max']} "
                     f"total {d['total'] / 3600:.2f} h")
    if rep["frames"]:
        f = rep["frames"]
        lines.append(f"frames: min {f['min']:.0f} median {f['median']:.0f} max {f['max']:.0f}")
    for kind, n in sorted(rep["warning_counts"].items()):
        lines.append(f"warning: {kind}: {n} videos")
    for b in rep["bad"][:max_list]:
        lines.append(f"BAD {b['path']}: {b['reason']}")
    if len(rep["bad"]) > max_list:
        lines.append(f"... and {len(rep['bad']) - max_list} more bad videos (--json lists all)")
    return "\n".join(lines)
