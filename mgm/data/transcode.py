"""Re-encode a dataset to H.264 (``mgm data transcode``) so motion vectors come from the
codec (Something-Something v2 ships VP9 WebM, which exports none).

Each video ``SRC/<rel>.<ext>`` becomes ``OUT_DIR/<rel>.mp4`` (libx264, yuv420p, same
frame rate, B-frames as x264's default, no audio; an odd width/height loses its last
pixel column/row). The annotations are written again under OUT_DIR in their format with
the new paths: a list keeps its separator and label fields; an SSv2 JSON and
``labels.json`` are copied (the loader finds ``<id>.mp4``); a class-folder tree keeps its
layout (UCF101/HMDB51 split files are copied; ``.avi`` names in them resolve to the
``.mp4`` files). Resumable: finished files are skipped (each is written to a temporary
name and renamed when complete). Videos that fail are reported and left out of the list.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from mgm.data.annotations import Annotations, load_annotations
from mgm.data.parallel import progress_map


def transcode_video(src: str, dst: str, crf: int = 23, preset: str = "veryfast") -> dict:
    """Re-encode one video; returns {"path", "out", "ok", "reason", "frames", "skipped"}."""
    rec = {"path": src, "out": dst, "ok": False, "reason": "", "frames": 0, "skipped": False}
    if os.path.exists(dst) and os.path.getsize(dst) > 0:
        rec.update(ok=True, skipped=True)
        return rec
    tmp = f"{dst}.part.mp4"
    try:
        import av
        from fractions import Fraction

        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        with av.open(src) as inp:
            if not inp.streams.video:
                raise ValueError("no video stream")
            ist = inp.streams.video[0]
            ist.thread_type = "AUTO"
            rate = ist.average_rate or ist.guessed_rate or Fraction(25)
            rate = Fraction(rate).limit_denominator(1001)
            n = 0
            with av.open(tmp, "w", format="mp4") as out:
                ost = None
                for frame in inp.decode(ist):
                    if ost is None:
                        w, h = frame.width - frame.width % 2, frame.height - frame.height % 2
                        if w < 2 or h < 2:
                            raise ValueError(f"frame size {frame.width}x{frame.height} too small")
                        ost = out.add_stream("libx264", rate=rate)
                        ost.width, ost.height, ost.pix_fmt = w, h, "yuv420p"
                        ost.options = {"crf": str(crf), "preset": preset}
                    if (frame.width, frame.height) == (ost.width, ost.height):
                        vf = frame.reformat(format="yuv420p")
                    else:
                        arr = frame.to_ndarray(format="rgb24")[: ost.height, : ost.width]
                        vf = av.VideoFrame.from_ndarray(arr, format="rgb24").reformat(format="yuv420p")
                    vf.pts = None
                    for pkt in ost.encode(vf):
                        out.mux(pkt)
                    n += 1
                if ost is None:
                    raise ValueError("decoded no frames")
                for pkt in ost.encode():
                    out.mux(pkt)
        os.replace(tmp, dst)
        rec.update(ok=True, frames=n)
    except Exception as e:  # noqa: BLE001 - one bad video must not stop a transcode run
        rec["reason"] = f"{type(e).__name__}: {e}".splitlines()[0]
        try:
            os.remove(tmp)
        except OSError:
            pass
    return rec


def _job(args):
    return transcode_video(*args)


def _base_dir(ann: Annotations, source: Path, root: str) -> Path:
    if root:
        return Path(root)
    if ann.format in ("folders", "unlabeled") and source.is_dir():
        return source
    return source.parent        # lists, SSv2 JSON, split files: paths are relative to them


def _out_rel(path: str, base: Path) -> Path:
    p = Path(path).resolve()
    try:
        rel = p.relative_to(base.resolve())
    except ValueError:
        rel = Path(p.name)
    return rel.with_suffix(".mp4")


def transcode_dataset(
    source: str, out_dir: str, root: str = "", format: str = "auto", workers: int = 1,
    crf: int = 23, preset: str = "veryfast", progress: bool = True,
) -> dict:
    """Transcode every video of an annotation source; returns a report dict."""
    src = Path(source)
    ann = load_annotations(source, root=root, format=format)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = _base_dir(ann, src, root)
    rels = [_out_rel(s.path, base) for s in ann.samples]
    jobs = [(s.path, str(out / r), crf, preset) for s, r in zip(ann.samples, rels)]
    recs = list(progress_map(_job, jobs, workers=workers, desc="transcode", progress=progress))
    written = _write_annotations(ann, src, out, rels, recs)
    return {
        "source": str(src), "format": ann.format, "out_dir": str(out), "total": len(recs),
        "transcoded": sum(1 for r in recs if r["ok"] and not r["skipped"]),
        "skipped": sum(1 for r in recs if r["skipped"]),
        "failed": [{"path": r["path"], "reason": r["reason"]} for r in recs if not r["ok"]],
        "annotations": written,
    }


def _write_annotations(ann: Annotations, src: Path, out: Path, rels, recs) -> str:
    ok = {str(r): rec["ok"] for r, rec in zip(rels, recs)}
    if ann.format == "list":
        lines = src.read_text(encoding="utf-8", errors="replace").splitlines()
        comma = any("," in l for l in lines[:5])
        sep = "," if comma else " "
        body = []
        for s, r in zip(ann.samples, rels):
            if ok[str(r)]:
                body.append(f"{r}{sep}{s.label}" if s.label >= 0 else str(r))
        dst = out / src.name
        dst.write_text("\n".join(body) + ("\n" if body else ""))
        if (src.parent / "classes.txt").is_file() and src.name != "classes.txt":
            shutil.copyfile(src.parent / "classes.txt", out / "classes.txt")
        return str(dst)
    if ann.format == "ssv2":
        entries = json.loads(src.read_text())
        keep = [e for e in entries if ok.get(f"{e['id']}.mp4", False)]
        (out / src.name).write_text(json.dumps(keep))
        if (src.parent / "labels.json").is_file():
            shutil.copyfile(src.parent / "labels.json", out / "labels.json")
        return str(out / src.name)
    if ann.format == "folders" and src.is_file():   # a UCF101 split file
        shutil.copyfile(src, out / src.name)
        if (src.parent / "classInd.txt").is_file():
            shutil.copyfile(src.parent / "classInd.txt", out / "classInd.txt")
        return str(out / src.name)
    return str(out)
