"""Per-class subsets: exact counts, seeded, nested, clear error when a class is too small."""
import pytest

from mgm.data.annotations import Sample
from mgm.data.subset import per_class, write_list
from mgm.errors import UserError


def test_per_class_counts_seeds_and_nesting(tmp_path):
    samples = [Sample(f"v{i}.mp4", i % 4) for i in range(40)]
    a = per_class(samples, 3, seed=0)
    assert len(a) == 12 and sorted(s.label for s in a) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert a == per_class(samples, 3, seed=0) and a != per_class(samples, 3, seed=1)
    assert set(s.path for s in a) <= set(s.path for s in per_class(samples, 6, seed=0))   # nested
    assert sorted(s.label for s in per_class(samples, 2, seed=0, classes=[1, 3])) == [1, 1, 3, 3]
    with pytest.raises(UserError, match="class 0 has 10 samples, fewer than the 11"):
        per_class(samples, 11)
    lines = write_list(a, tmp_path / "x" / "sub.txt").read_text().splitlines()
    assert len(lines) == 12 and [int(l.split()[1]) for l in lines] == [s.label for s in a] and lines[0].startswith("/")
