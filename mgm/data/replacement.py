"""Which video stands in for an unreadable one, so that replacements do not skew the data.

Within an epoch every index is drawn once. If bad entries were replaced by "the next index", a
run of k adjacent bad entries would send k extra draws to the one video after them (7x in an
epoch of 27 was seen). Here each bad entry gets its *own* good video: no good video stands in
for two bad ones, so over an epoch every good video is drawn once or twice (±1), as if the bad
entries had been dropped and the epoch padded with distinct good videos.

How, without knowing in advance which entries are bad (the loader finds out lazily, in several
worker processes, and must give the same answer in each): ``L`` seeded bijections
``m_1 .. m_L`` of ``[0, n)`` per epoch. A bad video ``i`` tries ``g = m_1(i)``, ``m_2(i)``, ...
and takes the first ``g`` that is good and not already taken at a lower level, i.e. for no
``k < l`` is ``j = m_k^-1(g)`` bad and placed at level ``k``. Since ``m_l`` is a bijection, only
``i`` can claim ``g`` at level ``l``, and a claim at level ``l`` wins over higher levels: each
good video is claimed at most once. Deciding whether ``g`` is taken at level ``k`` only needs
levels ``< k`` of another entry, so the recursion ends; it probes a handful of videos per bad
entry (cached). Everything is a function of (seed, epoch, index) and of which files are bad, so
every worker and every rank agrees. A bad entry not placed within ``L`` levels (only when most
of the list is bad) falls back to the first good ``m_l(i)``, which may double up.

The bijections are affine maps ``i -> (a*i + c) mod n`` with ``gcd(a, n) = 1``: O(1) memory
whatever the list size.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np

LEVELS = 16


class Replacements:
    """``is_bad(i) -> bool`` must be deterministic (a property of file ``i``); cached by the caller."""

    def __init__(self, n: int, seed: int, epoch: int, is_bad: Callable[[int], bool], levels: int = LEVELS):
        self.n, self.epoch = n, epoch
        self.is_bad = is_bad
        self.levels = levels
        self.maps: list[tuple[int, int, int]] = []     # (a, c, a^-1 mod n) per level
        for level in range(levels):
            rng = np.random.default_rng([seed & 0xFFFFFFFF, epoch, level, 0x2E9A])
            if n <= 1:
                self.maps.append((1, 0, 1))
                continue
            while True:
                a = int(rng.integers(1, n))
                if math.gcd(a, n) == 1:
                    break
            self.maps.append((a, int(rng.integers(0, n)), pow(a, -1, n)))
        self._memo: dict[int, tuple[int, int | None]] = {}   # i -> (levels tried, level placed)

    def map(self, level: int, i: int) -> int:
        a, c, _ = self.maps[level - 1]
        return (a * i + c) % self.n

    def unmap(self, level: int, g: int) -> int:
        _, c, inv = self.maps[level - 1]
        return (inv * (g - c)) % self.n

    def placed(self, i: int, upto: int | None = None) -> int | None:
        """The level (<= ``upto``) at which bad video ``i`` finds its own good video, or None."""
        upto = self.levels if upto is None else upto
        tried, found = self._memo.get(i, (0, None))
        while found is None and tried < upto:
            tried += 1
            g = self.map(tried, i)
            if g != i and not self.is_bad(g) and not any(self.taken(g, k) for k in range(1, tried)):
                found = tried
            self._memo[i] = (tried, found)
        return found if found is not None and found <= upto else None

    def taken(self, g: int, level: int) -> bool:
        """Whether good video ``g`` stands in for another bad video at ``level``."""
        j = self.unmap(level, g)
        return j != g and self.is_bad(j) and self.placed(j, level) == level

    def target(self, i: int) -> int | None:
        """The good video that stands in for bad video ``i`` (None: not placed, see fallback)."""
        level = self.placed(i)
        return None if level is None else self.map(level, i)

    def candidates(self, i: int, extra: int = 64) -> Iterator[int]:
        """Stand-ins for ``i`` in order: its own target, then (fallback, may double up) every
        level's image, then the next ``extra`` indices. The caller skips bad ones."""
        seen = {i}
        order = [self.target(i)] + [self.map(level, i) for level in range(1, self.levels + 1)]
        order += [(i + k) % self.n for k in range(1, min(self.n, extra + 1))]
        for g in order:
            if g is not None and g not in seen:
                seen.add(g)
                yield g
