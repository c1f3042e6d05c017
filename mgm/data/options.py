"""Values the ``data.*`` config keys accept (no torch, numpy or PyAV here: ``mgm.config``
checks a config against them without importing the data pipeline).

``data.format`` values are ``mgm.data.annotations.FORMATS`` (that module is light too).
"""
from __future__ import annotations

SAMPLINGS = ("dense", "segment")          # frames `stride` apart | TSN: one frame per segment

# data.motion, passed to mgm.video.read_clip(motion=...). mgm.video.decode keeps its own
# MOTION_MODES (that module imports PyAV); tests/test_config_validation.py pins the two equal.
MOTIONS = ("auto", "codec", "flow", "none")
