"""`releases_process_group`: what a run leaves in reference cycles (a DDP wrapper holding the
process group) is freed before the run returns or its exception reaches the caller."""
import gc
import weakref

import pytest

from mgm.engine.distributed import releases_process_group


class Cyclic:
    """Stands in for a DDP wrapper: only the cyclic collector can free it."""

    def __init__(self):
        self.me = self


@pytest.fixture
def collector_off():
    gc.disable()
    yield
    gc.enable()


def decorated_run(refs: list, raises: bool):
    @releases_process_group
    def run():
        obj = Cyclic()
        refs.append(weakref.ref(obj))
        if raises:
            raise RuntimeError("stopped")
        return "done"
    return run


def test_a_returning_run_leaves_nothing_in_cycles(collector_off):
    refs = []
    assert decorated_run(refs, raises=False)() == "done"
    assert refs[0]() is None


def test_a_raising_run_leaves_nothing_in_cycles_and_its_error_still_reaches_the_caller(collector_off):
    refs = []
    with pytest.raises(RuntimeError, match="stopped") as info:
        decorated_run(refs, raises=True)()
    # the traceback keeps the run's frame, not its locals
    assert refs[0]() is None
    assert info.traceback[-1].name == "run"
