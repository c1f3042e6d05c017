"""Run a function over many videos with a progress bar, in worker processes when asked."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator


def progress_map(fn: Callable, jobs: list, *, workers: int = 1, desc: str = "",
                 progress: bool = True, chunksize: int = 1) -> Iterator:
    """Yield ``fn(job)`` for every job, in order, while a tqdm bar counts them.

    With ``workers > 1`` the jobs run in a pool of *spawned* processes: forking a parent that
    already runs decoder, OpenCV or BLAS threads can deadlock the child. ``fn`` must therefore
    be a module-level function and the jobs picklable.
    """
    from tqdm import tqdm

    with tqdm(total=len(jobs), desc=desc, unit="video", disable=not progress) as bar:
        for result in _results(fn, jobs, workers, chunksize):
            bar.update()
            yield result


def _results(fn: Callable, jobs: list, workers: int, chunksize: int) -> Iterable:
    if workers <= 1 or len(jobs) <= 1:
        return map(fn, jobs)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    def run():
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as ex:
            yield from ex.map(fn, jobs, chunksize=chunksize)

    return run()
