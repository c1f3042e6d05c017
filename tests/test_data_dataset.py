"""The dataset through a real DataLoader: items, broken videos, determinism."""
import json

import pytest
import torch

from data_fixtures import broken_files, tiny_cfg, tiny_synth
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
    assert item["video"].shape == (3, 8, 64, 64) and item["video"].dtype == torch.float32
    assert "mask" not in item and "magnitude" not in item          # no guidance asked for
    assert item["label"] == 3 and item["index"] == 3 and item["view"] == 0 and item["bad"] == []
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


def test_broken_videos_are_replaced_counted_and_named(synth, tmp_path):
    bad = broken_files(tmp_path / "bad", synth / "videos/00000.mp4")
    good = [synth / f"videos/{i:05d}.mp4" for i in range(4)]
    order = [good[0], bad["truncated"], bad["empty"], good[1], bad["random"], bad["text"],
             bad["audio"], bad["missing"], good[2], good[3]]
    labels = [0, 9, 9, 1, 9, 9, 9, 9, 2, 3]
    lst = tmp_path / "mixed.txt"
    lst.write_text("".join(f"{p} {l}\n" for p, l in zip(order, labels)))
    cfg = tiny_cfg(str(lst), **{"data.num_classes": 10})
    ds = build_dataset(cfg, "train", "pretrain", guidance=True)
    report = BadVideoLog(tmp_path / "bad_videos.jsonl")
    seen = 0
    for batch in loader(ds, workers=2, batch=3):
        report.update(batch["bad"])
        assert batch["magnitude"].shape == (batch["video"].shape[0], 4, 4, 4)
        assert set(batch["label"].tolist()) <= {0, 1, 2, 3}        # only good videos
        seen += batch["video"].shape[0]
    assert seen == len(ds) == 10
    summary = report.end_epoch(0)
    names = {v["path"] for v in summary["videos"]}
    assert names == {str(bad[k]) for k in ("truncated", "empty", "random", "text", "audio", "missing")}
    assert summary["count"] == 6
    # item 1 needs truncated + empty, item 2 empty, items 4..7 need 4, 3, 2, 1 replacements
    assert summary["replacements"] == 2 + 1 + 4 + 3 + 2 + 1
    reasons = {v["path"]: v["reason"] for v in summary["videos"]}
    assert "no such file" in reasons[str(bad["missing"])] and "video stream" in reasons[str(bad["audio"])]
    line = json.loads((tmp_path / "bad_videos.jsonl").read_text().splitlines()[0])
    assert line["count"] == 6 and line["epoch"] == 0
    assert report.end_epoch(1)["count"] == 0


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
