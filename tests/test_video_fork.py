"""A process forked after the parent decoded (a DataLoader worker) must decode too.

The RGB conversion reuses one swscale context per thread; a forked child inherits it with slice
threads that do not exist there, and reconfiguring it (a clip of another size) used to hang
forever in sws_frame_setup.
"""
import multiprocessing as mp

import numpy as np

from mgm.video import read_clip


def _child(path, out):
    clip = read_clip(path, num_frames=4, stride=2, start=0, motion="none")
    out.put(clip.frames.shape)


def test_decode_in_forked_child_after_parent_decoded(synthetic_video_factory):
    small = synthetic_video_factory(width=64, height=48, num_frames=12)
    other = synthetic_video_factory(width=96, height=64, num_frames=12)
    parent = read_clip(str(small.path), num_frames=4, stride=2, start=0, motion="none")
    assert parent.frames.shape == (4, 48, 64, 3)

    ctx = mp.get_context("fork")
    out = ctx.Queue()
    p = ctx.Process(target=_child, args=(str(other.path), out))
    p.start()
    p.join(timeout=120)  # a hang, not a speed check: the child finishes in well under a second
    if p.is_alive():
        p.kill()
        p.join()
        raise AssertionError("decoding in a forked child hung (inherited swscale context)")
    assert p.exitcode == 0
    assert tuple(out.get(timeout=5)) == (4, 64, 96, 3)
    # the parent's own context still works after the fork
    again = read_clip(str(small.path), num_frames=4, stride=2, start=0, motion="none")
    np.testing.assert_array_equal(again.frames, parent.frames)
