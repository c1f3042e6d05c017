"""Engine building blocks: layer decay / weight decay groups, schedule, LARS, sampler, mixup/cutmix,
multi-view merge, checkpoint manager."""
import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from mgm.config import load_config
from mgm.errors import UserError
from mgm.engine.checkpoint import CheckpointManager, resolve_resume
from mgm.engine.evaluate import accumulate_views, combine_partials, finalize, merge_views
from mgm.engine.mixup import VideoMixup, smooth_one_hot, soft_cross_entropy
from mgm.engine.optim import LARS, CosineSchedule, build_optimizer, param_groups
from mgm.engine.samplers import EpochItems, EpochStream, ResumableDistributedSampler


# ---------------------------------------------------------------- layer decay


class ToyViT(nn.Module):
    """Names as mgm.models: encoder.patch_embed / encoder.blocks.i / fc_norm / head."""

    def __init__(self, depth=3, dim=4):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.patch_embed = nn.Linear(dim, dim)
        self.encoder.blocks = nn.ModuleList(
            nn.ModuleDict({"norm1": nn.LayerNorm(dim), "fc": nn.Linear(dim, dim)}) for _ in range(depth))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.fc_norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 2)


def _lookup(groups):
    out = {}
    for g in groups:
        for n in g["names"]:
            out[n] = (g["lr_scale"], g["weight_decay"], g["layer_id"])
    return out


def test_layer_decay_and_no_weight_decay_on_toy():
    m = ToyViT(depth=3)
    got = _lookup(param_groups(m, weight_decay=0.05, layer_decay=0.5))
    L = 3
    assert got["encoder.patch_embed.weight"] == (0.5 ** (L + 1), 0.05, 0)
    assert got["encoder.patch_embed.bias"] == (0.5 ** (L + 1), 0.0, 0)
    for i in range(L):
        assert got[f"encoder.blocks.{i}.fc.weight"] == (0.5 ** (L - i), 0.05, i + 1)
        assert got[f"encoder.blocks.{i}.norm1.weight"][1] == 0.0        # norm: no decay
        assert got[f"encoder.blocks.{i}.fc.bias"][1] == 0.0
    assert got["head.weight"] == (1.0, 0.05, L + 1)
    assert got["head.bias"] == (1.0, 0.0, L + 1)
    assert got["fc_norm.weight"] == (1.0, 0.0, L + 1)
    assert got["mask_token"][1] == 0.0                                   # token: no decay
    assert len(got) == sum(1 for _ in m.parameters())


def test_layer_decay_on_the_real_classifier():
    models = pytest.importorskip("mgm.models")
    c = models.build_classifier("vit_tiny", num_classes=5, num_frames=4, img_size=32)
    depth = c.spec.depth
    got = _lookup(param_groups(c, weight_decay=0.05, layer_decay=0.75))
    for name, p in c.named_parameters():
        scale, wd, lid = got[name]
        if name.startswith("encoder.patch_embed"):
            assert lid == 0
        elif name.startswith("encoder.blocks."):
            assert lid == int(name.split(".")[2]) + 1
        else:
            assert lid == depth + 1
        assert scale == pytest.approx(0.75 ** (depth + 1 - lid))
        assert wd == (0.0 if p.ndim <= 1 or name.endswith(".bias") else 0.05), name
    assert got["head.weight"][0] == 1.0


def test_schedule_and_optimizer_lr_scale():
    m = ToyViT()
    groups = param_groups(m, 0.05, 0.5)
    for g in groups:
        g.pop("names")
    opt = torch.optim.AdamW(groups, lr=1.0)
    s = CosineSchedule(opt, peak_lr=1.0, total_steps=10, warmup_steps=2, min_lr=0.1)
    assert s.lr_at(0) == pytest.approx(0.5) and s.lr_at(1) == pytest.approx(1.0)
    assert s.lr_at(2) == pytest.approx(1.0) and s.lr_at(10) == pytest.approx(0.1)
    assert s.lr_at(6) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    s.apply(1)
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(g["lr_scale"])


def test_lars_scales_matrix_steps_by_the_trust_ratio_and_is_chosen_by_optim_name():
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))            # ||w|| = 5
    b = nn.Parameter(torch.tensor([1.0]))
    opt = LARS([{"params": [w], "weight_decay": 0.5}, {"params": [b], "weight_decay": 0.0}], lr=2.0,
               trust_coefficient=0.01)
    w.grad, b.grad = torch.tensor([[-1.5, 0.0]]), torch.tensor([0.25])
    opt.step()
    step = torch.tensor([[-1.5, 0.0]]) + 0.5 * torch.tensor([[3.0, 4.0]])   # g + wd * w = [0, 2]
    assert torch.allclose(w, torch.tensor([[3.0, 4.0]]) - 2.0 * (0.01 * 5 / 2.0) * step)
    assert torch.allclose(b, torch.tensor([1.0 - 2.0 * 0.25]))              # 1-D: plain step, no decay
    buf = (0.01 * 5 / 2.0) * step
    w.grad, b.grad = torch.zeros(1, 2), torch.zeros(1)      # only weight decay: its step has norm trust * ||w||
    before = w.detach().clone()
    opt.step()
    assert torch.allclose(w, before - 2.0 * (0.9 * buf + 0.01 * before))
    assert torch.allclose(b, torch.tensor([0.5 - 2.0 * 0.9 * 0.25]))       # momentum only
    # optim.name reaches the optimiser
    cfg = load_config("tiny_linprobe", [])
    assert type(build_optimizer(cfg, ToyViT(), 0.1)).__name__ == "SGD"
    cfg.optim.name = "lars"
    assert isinstance(build_optimizer(cfg, ToyViT(), 0.1), LARS)


# ---------------------------------------------------------------- sampler


def test_sampler_shards_repeats_and_resumes():
    n = 10
    one = ResumableDistributedSampler(n, 1, 0, seed=3)
    two = [ResumableDistributedSampler(n, 2, r, seed=3) for r in range(2)]
    for s in (one, *two):
        s.set_epoch(4)
    full = list(one)
    assert sorted(full) == list(range(n))
    # global batch k of 2 processes with batch b == batch k of 1 process with batch 2b
    b = 2
    for k in range(2):
        union = set(list(two[0])[k * b:(k + 1) * b]) | set(list(two[1])[k * b:(k + 1) * b])
        assert union == set(full[k * 2 * b:(k + 1) * 2 * b])
    # other epoch, other order
    one.set_epoch(5)
    assert list(one) != full
    # mid-epoch resume
    one.set_epoch(4)
    one.set_start(3)
    assert list(one) == full[3:] and len(one) == n - 3
    # repeated augmentation: r copies j = i*r + c, adjacent
    rep = ResumableDistributedSampler(4, 1, 0, seed=0, repeats=3)
    order = list(rep)
    assert sorted(order) == list(range(12))
    for k in range(0, 12, 3):
        i = order[k] // 3
        assert order[k:k + 3] == [3 * i, 3 * i + 1, 3 * i + 2]
    # padding: odd count over two ranks wraps around
    odd = [ResumableDistributedSampler(5, 2, r, shuffle=False) for r in range(2)]
    assert list(odd[0]) == [0, 2, 4] and list(odd[1]) == [1, 3, 0]


class _CopyEcho(torch.utils.data.Dataset):
    """(sample, epoch, which copy of it)."""

    def __len__(self):
        return 6

    def item(self, i, epoch, copy):
        return i, epoch, copy


@pytest.mark.parametrize("world", [1, 2])
def test_repeated_augmentation_trains_every_sample_r_times_with_r_different_draws(world):
    # the pair the Trainer reads for finetune.repeated_aug = r: the sampler's item indices must
    # be the ones EpochItems decodes (it once gave i r times: half the set, equal copies)
    r = 2
    data = EpochItems(_CopyEcho(), r)
    items = []
    for rank in range(world):
        sampler = ResumableDistributedSampler(6, world, rank, seed=1, repeats=r)
        sampler.set_epoch(3)
        items += [data[pair] for pair in EpochStream(sampler, 6 * r // world, 4)]
    assert sorted(i for i, _, _ in items) == [i for i in range(6) for _ in range(r)]
    assert {e for _, e, _ in items} == {3}
    for i in range(6):
        assert sorted(c for k, _, c in items if k == i) == list(range(r))


def test_epoch_stream_chains_epochs_cut_to_whole_steps_from_the_resume_position():
    sampler = ResumableDistributedSampler(10, 2, 1, seed=5)       # rank 1 of 2: 5 items an epoch
    sampler.set_epoch(2)
    sampler.set_start(2)                                            # resumed after 2 items
    stream = EpochStream(sampler, 4, 5)                             # 2 steps of 2 an epoch
    pairs = list(stream)
    assert len(pairs) == len(stream) == 2 + 4 + 4
    assert pairs == ([(2, i) for i in sampler.indices(2)[2:4]] + [(3, i) for i in sampler.indices(3)[:4]]
                     + [(4, i) for i in sampler.indices(4)[:4]])
    assert sampler.indices(3) != sampler.indices(4)                 # each epoch its own order
    assert EpochItems(_CopyEcho())[(4, 3)] == (3, 4, 0)

    class OwnDataset(torch.utils.data.Dataset):         # a user's: set_epoch, no item()
        epoch = 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __getitem__(self, i):
            return i, self.epoch

    assert [EpochItems(OwnDataset())[pair] for pair in [(4, 3), (5, 1)]] == [(3, 4), (1, 5)]
    with pytest.raises(UserError, match="repeated augmentation .2 copies. needs a dataset that draws each copy apart"):
        EpochItems(OwnDataset(), 2)       # it could only give equal copies


# ---------------------------------------------------------------- mixup / cutmix


def test_mixup_mixes_clips_and_targets_with_the_same_lambda():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 2, 8, 8)
    y = torch.tensor([0, 1, 2, 3])
    mix = VideoMixup(5, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.1, seed=1)
    xm, t = mix(x, y)
    lam = mix.last["lam"]
    assert mix.last["mode"] == "mixup" and 0 < lam < 1
    torch.testing.assert_close(xm, lam * x + (1 - lam) * x.flip(0))
    sm = smooth_one_hot(y, 5, 0.1)
    torch.testing.assert_close(t, lam * sm + (1 - lam) * sm.flip(0))
    assert torch.allclose(t.sum(1), torch.ones(4))
    assert sm[0, 0].item() == pytest.approx(0.9 + 0.02) and sm[0, 1].item() == pytest.approx(0.02)


def test_cutmix_box_is_a_spatial_tube_and_lambda_is_its_area():
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1, 1).expand(4, 3, 4, 16, 16).clone()
    y = torch.tensor([0, 1, 2, 3])
    mix = VideoMixup(4, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0, seed=2)
    for _ in range(5):
        xm, t = mix(x, y)
        y0, y1, x0, x1 = mix.last["box"]
        area = (y1 - y0) * (x1 - x0)
        assert mix.last["lam"] == pytest.approx(1 - area / 256)
        inside = torch.zeros(16, 16, dtype=torch.bool)
        inside[y0:y1, x0:x1] = True
        for i in range(4):
            # every frame and channel: the partner's value inside the box, own value outside
            assert torch.all(xm[i][..., inside] == 3 - i) and torch.all(xm[i][..., ~inside] == i)
            assert t[i, i].item() == pytest.approx(mix.last["lam"] if i != 3 - i else 1.0)
        # soft targets follow the pixel share
        assert torch.allclose(t.sum(1), torch.ones(4))


def test_mixup_state_round_trip_and_loss():
    a = VideoMixup(3, seed=5)
    a._draw()
    st = a.state_dict()
    d1 = a._draw()
    b = VideoMixup(3, seed=99)
    b.load_state_dict(st)
    assert b._draw() == d1
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    t = torch.tensor([[1.0, 0.0, 0.0]])
    assert soft_cross_entropy(logits, t).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, torch.tensor([0])).item())


# ---------------------------------------------------------------- multi-view merge


def test_multiview_merge_softmax_then_average_on_known_logits():
    # video 0: view A says class 0 with huge confidence via logits, views B, C mildly class 1.
    # Averaging logits would pick class 0; averaging softmaxes picks class 1.
    logits = np.array([[10.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 2.0, 0.0],
                       [0.0, 0.0, 1.0]])
    idx, views, labels = [0, 0, 0, 1], [0, 1, 2, 0], [1, 1, 1, 2]
    metrics, rows = merge_views(idx, views, logits, labels, ks=(1, 2))
    assert logits[:3].mean(0).argmax() == 0
    assert rows[0]["pred"] == 1 and rows[0]["views"] == 3 and rows[1]["pred"] == 2
    e = np.exp(logits[:3] - logits[:3].max(1, keepdims=True))
    np.testing.assert_allclose(rows[0]["probs"], (e / e.sum(1, keepdims=True)).mean(0))
    assert metrics["top1"] == 100.0 and metrics["videos"] == 2


def test_multiview_merge_across_ranks_with_padding():
    rng = np.random.default_rng(0)
    n_videos, views = 5, 3
    items = [(v, k) for v in range(n_videos) for k in range(views)]   # dataset order
    logits = rng.normal(size=(len(items), 7))
    labels = rng.integers(0, 7, n_videos)
    ref_metrics, ref_rows = merge_views([i for i, _ in items], [k for _, k in items], logits,
                                        [labels[i] for i, _ in items])
    world = 4                                     # 15 items over 4 ranks: one padded position
    parts = []
    for r in range(world):
        s = ResumableDistributedSampler(len(items), world, r, shuffle=False)
        pos = [r + world * k for k in range(len(s))]
        keep = [(p, j) for p, j in zip(pos, s) if p < len(items)]      # as evaluate() does
        part = accumulate_views({}, [items[j][0] for _, j in keep], [items[j][1] for _, j in keep],
                                logits[[j for _, j in keep]], [labels[items[j][0]] for _, j in keep])
        parts.append(part)
    metrics, rows = finalize(combine_partials(parts))
    assert metrics == ref_metrics
    for a, b in zip(rows, ref_rows):
        np.testing.assert_allclose(a["probs"], b["probs"])
        assert a["views"] == views
    # without dropping the padded position, the duplicate view is caught
    dup = accumulate_views({}, [items[0][0]], [items[0][1]], logits[:1], [labels[0]])
    with pytest.raises(ValueError, match="two ranks"):
        combine_partials(parts + [dup])


# ---------------------------------------------------------------- checkpoint manager


def test_checkpoint_manager_atomic_keep_last_and_resume(tmp_path):
    mgr = CheckpointManager(tmp_path, keep_last=2)
    assert mgr.latest() is None and resolve_resume("auto", tmp_path) is None

    def writer(tag):
        def write(d):
            (d / "trainer.pt").write_text(tag)
        return write

    for step in (1, 2, 3):
        mgr.save(step, writer(str(step)))
    assert [s for s, _ in mgr.list()] == [2, 3]
    # a crashed save leaves a .tmp dir: ignored, and cleaned by the next save
    crashed = mgr.dir / ".tmp-step_00000004-123"
    crashed.mkdir()
    (crashed / "trainer.pt").write_text("partial")
    assert mgr.latest().name == "step_00000003"
    assert resolve_resume("auto", tmp_path) == mgr.latest()
    mgr.save(5, writer("5"))
    assert not crashed.exists() and [s for s, _ in mgr.list()] == [3, 5]
    assert (mgr.latest() / "trainer.pt").read_text() == "5"
    with pytest.raises(FileNotFoundError):
        resolve_resume(str(tmp_path / "nope"), tmp_path)
    # saving the same step twice replaces it
    mgr.save(5, writer("5b"))
    assert (mgr.latest() / "trainer.pt").read_text() == "5b"
    assert not [p for p in os.listdir(mgr.dir) if p.startswith(".")]
