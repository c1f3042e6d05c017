"""The dataset through a real DataLoader: items, broken videos, determinism."""
import json

import pytest
import torch

from collections import Counter

from data_fixtures import broken_files, odd_videos, tiny_cfg, tiny_synth
from mgm.data import BadVideoLog, build_dataset, collate


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return tiny_synth(tmp_path_factory.mktemp("synth_ds"), videos=8, size=64, frames=20)


def loader(ds, workers=0, batch=4, shuffle_seed=None):
    sampler = None
    if shuffle_seed is not None:
        sampler = torch.utils.data.RandomSampler(ds, generator=torch.Generator().manual_seed(shuffle_seed))
    return torch.utils.data.DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers,
                                       collate_fn=collate)


def test_pretrain_items(synth):
    cfg = tiny_cfg(str(synth / "all.txt"))
    ds = build_dataset(cfg, "train", "pretrain")
    assert len(ds) == 8 and ds.num_classes == 8 and ds.classes[0] == "left"
    item = ds[3]
    assert item["video"].shape == (3, 8, 64, 64) and item["video"].dtype == torch.uint8
    assert "mask" not in item and "magnitude" not in item          # no guidance asked for
    assert item["label"] == 3 and item["index"] == 3 and item["view"] == 0 and item["bad"] == []
    assert item["short"] == [] and item["requested"] == 3
    guided = build_dataset(cfg, "train", "pretrain", guidance=True)
    it = guided[1]
    assert "mask" not in it and it["magnitude"].shape == (4, 4, 4) and it["magnitude_valid"].dtype == torch.bool
    assert float(it["magnitude"][it["magnitude_valid"]].max()) > 0.5       # the object moves
    assert torch.equal(it["video"], ds[1]["video"])                # same clip, same augmentation


def test_eval_views_and_finetune(synth):
    cfg = tiny_cfg(str(synth / "all.txt"), **{"data.test": str(synth / "all.txt")})
    test = build_dataset(cfg, "test", "eval")
    assert len(test) == 8 * 6                                        # 2 clips x 3 crops
    a, b = test[6], test[7]
    assert (a["index"], a["view"], b["view"]) == (1, 0, 1) and "mask" not in a
    fresh = build_dataset(cfg, "test", "eval")[7]                    # b came from the cached clip
    assert torch.equal(fresh["video"], b["video"])          # (square videos: the 3 crops coincide)
    val = build_dataset(cfg, "val", "finetune")
    assert len(val) == 8 and torch.equal(val[2]["video"], val[2]["video"])
    batch = next(iter(loader(test, batch=6)))
    assert batch["video"].shape == (6, 3, 8, 64, 64) and batch["label"].dtype == torch.int64
    assert batch["view"].tolist() == [0, 1, 2, 3, 4, 5]


def test_bad_videos_get_distinct_stand_ins_and_are_named_with_their_reason(synth, tmp_path):
    """Broken files of every kind, a 3-frame clip (the train split skips it), VP9 and MJPEG
    (no codec motion vectors: used with optical flow) mixed into a list, bad entries adjacent:
    over each epoch every good video is drawn once or twice (±1), every bad file is named with
    what is wrong and what stood in for it, and the stand-ins change with the epoch."""
    bad = broken_files(tmp_path / "bad", synth / "videos/00000.mp4")
    odd = odd_videos(tmp_path / "odd")
    bad["three_frames"] = odd.pop("three_frames")
    good = [synth / f"videos/{i:05d}.mp4" for i in range(8)] + [odd["vp9"], odd["mjpeg"]]
    order = good[:2] + [bad["truncated"], bad["empty"], bad["random"], bad["text"]] + good[2:5] + [
        bad["audio"], bad["missing"], bad["three_frames"]] + good[5:]
    lst = tmp_path / "mixed.txt"
    lst.write_text("".join(f"{p} {i % 8}\n" for i, p in enumerate(order)))
    cfg = tiny_cfg(str(lst))
    ds = build_dataset(cfg, "train", "pretrain", guidance=True)
    report = BadVideoLog(tmp_path / "bad_videos.jsonl")
    stand_ins = []
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        drawn = Counter()
        for batch in loader(ds, workers=2, batch=3):
            report.update(batch["bad"], batch["short"])
            assert batch["magnitude"].shape == (batch["video"].shape[0], 4, 4, 4)
            drawn.update(str(ds.samples[i].path) for i in batch["index"].tolist())
            replaced = batch["index"] != batch["requested"]
            assert replaced.sum() == len(batch["bad"])
        assert set(drawn) == {str(p) for p in good}                 # only good videos
        assert sum(drawn.values()) == len(ds) == 17
        assert max(drawn.values()) - min(drawn.values()) <= 1, drawn
        summary = report.end_epoch(epoch)
        reasons = {v["path"]: v["reason"] for v in summary["videos"]}
        assert set(reasons) == {str(p) for p in bad.values()} and summary["replacements"] == 7
        assert reasons[str(bad["missing"])] == "no such file"
        assert reasons[str(bad["empty"])].startswith("empty file")
        assert "no video stream" in reasons[str(bad["audio"])]
        assert reasons[str(bad["three_frames"])].startswith("too short: 3 frames, clip needs 15")
        for k in ("random", "text", "truncated"):
            assert reasons[str(bad[k])].startswith("not a readable video container"), reasons
        by = {v["path"]: list(v["replaced_by"]) for v in summary["videos"]}
        assert all(len(u) == 1 and u[0] in drawn for u in by.values())
        assert len({u[0] for u in by.values()}) == 7                 # a distinct stand-in each
        stand_ins.append(by)
        assert summary["short_count"] == 0
    assert stand_ins[0] != stand_ins[1]                                # other stand-ins next epoch
    lines = [json.loads(x) for x in (tmp_path / "bad_videos.jsonl").read_text().splitlines()]
    assert [x["count"] for x in lines] == [7, 7] and lines[0]["epoch"] == 0
    assert report.end_epoch(2)["count"] == 0
    # the same items in the main process (no workers): stand-ins do not depend on the worker
    ds.set_epoch(1)
    fresh = build_dataset(cfg, "train", "pretrain")
    fresh.set_epoch(1)
    for i in (2, 3, 9, 10, 11):
        assert ds[i]["index"] == fresh[i]["index"] != i and ds[i]["bad"] == fresh[i]["bad"]


def test_short_videos_are_used_and_named_val_keeps_the_three_frame_clip(synth, tmp_path):
    odd = odd_videos(tmp_path / "odd")
    lst = tmp_path / "short.txt"
    lst.write_text(f"{synth / 'videos/00001.mp4'} 1\n{odd['three_frames']} 2\n")
    cfg = tiny_cfg(str(lst), **{"data.stride": 4})          # 8 frames x 4: a clip spans 29
    train = build_dataset(cfg, "train", "pretrain")
    item = train[0]
    assert item["bad"] == [] and item["short"] == [f"{synth / 'videos/00001.mp4'}: 20 frames, clip needs 29 "
                                                   "(the last frame repeats)"]
    assert train[1]["index"] == 0 and "too short: 3 frames" in train[1]["bad"][0]
    val = build_dataset(cfg, "val", "finetune")             # evaluation uses every video
    assert val[1]["index"] == 1 and val[1]["bad"] == [] and "3 frames" in val[1]["short"][0]
    report = BadVideoLog()
    batch = collate([train[0], train[1]])
    report.update(batch["bad"], batch["short"])
    s = report.end_epoch(0)
    assert s["count"] == 1 and s["short_count"] == 1 and s["short"][0]["times"] == 2


def test_stand_ins_are_one_per_good_video_on_large_lists():
    import numpy as np

    from mgm.data.replacement import Replacements

    for seed in range(20):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(10, 2000))
        bad = set(np.flatnonzero(rng.random(n) < 0.25).tolist())
        r = Replacements(n, seed, 0, lambda i: i in bad)
        targets = [r.target(i) for i in sorted(bad, reverse=bool(seed % 2))]
        assert None not in targets and not bad & set(targets)
        assert len(set(targets)) == len(targets)                  # each good video at most once
        again = Replacements(n, seed, 0, lambda i: i in bad)
        assert [again.target(i) for i in sorted(bad, reverse=bool(seed % 2))] == targets
        assert [Replacements(n, seed, 1, lambda i: i in bad).target(i) for i in sorted(bad, reverse=bool(seed % 2))] != targets


def _batches(ds, workers, epoch, n=2):
    ds.set_epoch(epoch)
    out = []
    for i, b in enumerate(loader(ds, workers=workers, batch=3, shuffle_seed=epoch)):
        out.append((b["video"], b["magnitude"], b["index"]))
        if i + 1 == n:
            break
    return out


def test_same_seed_same_batches_any_worker_count(synth):
    cfg = tiny_cfg(str(synth / "all.txt"), **{"run.seed": 7})
    ds = build_dataset(cfg, "train", "pretrain", guidance=True)
    a = _batches(ds, 0, epoch=1)
    b = _batches(build_dataset(cfg, "train", "pretrain", guidance=True), 2, epoch=1)
    for (va, ma, ia), (vb, mb, ib) in zip(a, b):
        assert torch.equal(ia, ib) and torch.equal(va, vb) and torch.equal(ma, mb)
    c = _batches(ds, 0, epoch=2)
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(a, c))   # another epoch, other draws
    other = build_dataset(tiny_cfg(str(synth / "all.txt"), **{"run.seed": 8}), "train", "pretrain")
    other.set_epoch(1)
    ds.set_epoch(1)
    assert not torch.equal(other[0]["video"], ds[0]["video"])


def test_set_epoch_reaches_persistent_workers(synth):
    cfg = tiny_cfg(str(synth / "all.txt"), **{"run.seed": 3})
    ds = build_dataset(cfg, "train", "pretrain")
    dl = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=1, persistent_workers=True,
                                     collate_fn=collate)
    got = []
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        got.append(next(iter(dl))["video"])
    assert not torch.equal(got[0], got[1])
    fresh = build_dataset(cfg, "train", "pretrain")
    for epoch in (0, 1):
        fresh.set_epoch(epoch)
        assert torch.equal(got[epoch], collate([fresh[i] for i in range(4)])["video"])
