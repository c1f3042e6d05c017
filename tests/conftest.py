"""Shared test fixtures: small synthetic videos, made once per session.

    def test_x(synthetic_video_path): ...          # str path, 128x96 H.264, 48 frames
    def test_y(synthetic_video): ...               # SyntheticTruth: .path, .boxes (T,N,4), .centres
    def test_z(synthetic_video_factory):
        truth = synthetic_video_factory(width=112, height=112, num_frames=32, pan=(1, 0))

The default clip: one 32x32 textured square moving right and down at (1.5, 0.75) px/frame over a
static textured background, libx264 with 3 B-frames (IBBBP, no B-pyramid), GOP 32, 25 fps.
Videos are cached per session by their arguments; treat the files as read-only.
"""
from __future__ import annotations

import json

import pytest

DEFAULT_VIDEO = dict(width=128, height=96, num_frames=48, fps=25.0, seed=0)


def _default_objects():
    from mgm.video.synthetic import SyntheticObject

    return [SyntheticObject(size=(32, 32), start=(30.0, 30.0), velocity=(1.5, 0.75))]


@pytest.fixture(scope="session")
def synthetic_video_factory(tmp_path_factory):
    """make(**kwargs) -> SyntheticTruth; kwargs as mgm.video.synthetic.make_synthetic_video
    (without path). Same kwargs -> same cached file."""
    from mgm.video.synthetic import make_synthetic_video

    root = tmp_path_factory.mktemp("synthetic_videos")
    cache: dict[str, object] = {}

    def make(**kwargs):
        kw = dict(DEFAULT_VIDEO)
        kw.update(kwargs)
        if "objects" not in kw:
            kw["objects"] = _default_objects()
        key = json.dumps({k: repr(v) for k, v in sorted(kw.items())})
        if key not in cache:
            ext = kw.pop("ext", None) or ("webm" if kw.get("codec") == "libvpx-vp9" else "mp4")
            path = root / f"v{len(cache)}.{ext}"
            cache[key] = make_synthetic_video(path, **kw)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def synthetic_video(synthetic_video_factory):
    """The default clip's SyntheticTruth (.path, .boxes, .centres, ...)."""
    return synthetic_video_factory()


@pytest.fixture(scope="session")
def synthetic_video_path(synthetic_video):
    """Path (str) of the default 128x96 H.264 clip."""
    return str(synthetic_video.path)
