"""VideoMAE model family: shapes, exact-definition details, options, checkpoints (no transformers)."""
import argparse

import pytest
import torch

from mgm.models import (
    CheckpointError,
    build_classifier,
    build_pretrainer,
    init_from,
    load_checkpoint,
    save_checkpoint,
    sinusoid_table,
)
from mgm.models.checkpoint import save_official

TINY = dict(num_frames=4, img_size=32, tubelet=2, patch=16)  # 2 x 2 x 2 = 8 tokens
SMALL = dict(embed_dim=32, depth=2, num_heads=2, decoder_dim=16, decoder_heads=2, decoder_depth=1)


def _pre(**kw):
    torch.manual_seed(0)
    return build_pretrainer("custom", **{**TINY, **SMALL, **kw})


def _video(b=2, t=4, s=32):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, 3, t, s, s, generator=g)


def _mask(b=2, n=8, k=6, seed=2):
    g = torch.Generator().manual_seed(seed)
    m = torch.zeros(b, n, dtype=torch.bool)
    for i in range(b):
        m[i, torch.randperm(n, generator=g)[:k]] = True
    return m


def test_sinusoid_table_matches_formula():
    t = sinusoid_table(5, 6)
    pos, j = 3, 4
    assert t[pos, j].item() == pytest.approx(torch.sin(torch.tensor(pos / 10000 ** (2 * (j // 2) / 6))).item(), abs=1e-7)
    assert t[pos, j + 1].item() == pytest.approx(torch.cos(torch.tensor(pos / 10000 ** (2 * (j // 2) / 6))).item(), abs=1e-7)


def test_pretrainer_shapes_and_no_k_bias():
    m = _pre()
    loss, pred = m(_video(), _mask())
    assert pred.shape == (2, 6, 2 * 16 * 16 * 3) and loss.ndim == 0
    names = dict(m.named_parameters())
    assert "encoder.blocks.0.attn.q_bias" in names and "encoder.blocks.0.attn.qkv.bias" not in names
    assert m.encoder.blocks[0].norm1.eps == 1e-6
    assert not any("pos_embed" in k for k in m.state_dict())  # fixed tables are not saved


def test_unequal_mask_counts_are_an_error():
    m = _pre()
    mask = _mask()
    mask[1, ~mask[1]] = torch.tensor([True, False])  # 7 masked vs 6
    with pytest.raises(ValueError, match="same number"):
        m(_video(), mask)


def test_loss_matches_manual_target_and_order():
    """Encoder sees visible tokens in index order; target is per-patch unbiased norm-pix."""
    m = _pre().eval()
    v, mask = _video(), _mask()
    _, pred = m(v, mask)
    for norm in (True, False):
        m.spec.norm_pix_loss = norm
        loss, _ = m(v, mask)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1, 1)
        x = v * std + mean
        B = x.shape[0]
        p = x.reshape(B, 3, 2, 2, 2, 16, 2, 16).permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(B, 8, 512, 3)
        if norm:
            p = (p - p.mean(-2, keepdim=True)) / (p.var(-2, unbiased=True, keepdim=True).sqrt() + 1e-6)
        target = p.reshape(B, 8, -1)[mask].reshape(B, 6, -1)
        assert torch.allclose(loss, ((pred - target) ** 2).mean(), atol=1e-6)


def test_visible_tokens_do_not_leak_between_samples():
    m = _pre().eval()
    v, mask = _video(), _mask()
    _, pred = m(v, mask)
    v2 = v.clone()
    v2[1] = torch.randn_like(v2[1])
    _, pred2 = m(v2, mask)
    assert torch.equal(pred[0], pred2[0]) and not torch.allclose(pred[1], pred2[1])


def test_divided_attention_masked_path_equals_grid_path():
    torch.manual_seed(0)
    c = build_classifier("custom", num_classes=3, attention="divided", **TINY, **SMALL).eval()
    for blk in c.encoder.blocks:  # make the temporal branch count
        torch.nn.init.normal_(blk.temporal_fc.weight, std=0.2)
    v = _video()
    full = c.encoder(v)
    ids = torch.arange(8).expand(2, 8)
    masked_path = c.encoder(v, ids)
    assert torch.allclose(full, masked_path, atol=1e-5)
    m = _pre(attention="divided")
    loss, _ = m(_video(), _mask())
    loss.backward()
    assert m.encoder.blocks[0].temporal_fc.weight.grad.abs().sum() > 0


def test_grad_checkpointing_same_grads_and_drop_path_trains():
    v, mask = _video(), _mask()
    grads = []
    for ckpt in (False, True):
        m = _pre(grad_checkpointing=ckpt).train()
        loss, _ = m(v, mask)
        loss.backward()
        grads.append(m.encoder.blocks[0].attn.qkv.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
    m = _pre(drop_path=0.5).train()
    loss, _ = m(v, mask)
    assert torch.isfinite(loss)


def test_bf16_autocast_runs_close_to_fp32():
    m = _pre().train()
    v, mask = _video(), _mask()
    ref, _ = m(v, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, pred = m(v, mask)
    loss.backward()
    assert pred.dtype == torch.bfloat16 and loss.dtype == torch.float32
    assert abs(loss.item() - ref.item()) < 0.05 * ref.item()


def test_layer_ids_and_no_weight_decay():
    c = build_classifier("custom", num_classes=4, **TINY, **SMALL)
    assert c.num_layers == 4
    assert c.layer_id("encoder.patch_embed.proj.weight") == 0
    assert c.layer_id("module.encoder.blocks.1.mlp.fc1.weight") == 2
    assert c.layer_id("_orig_mod.head.weight") == 3
    nwd = c.no_weight_decay()
    assert "encoder.blocks.0.attn.q_bias" in nwd and "fc_norm.weight" in nwd and "head.bias" in nwd
    assert "head.weight" not in nwd and "encoder.blocks.0.attn.qkv.weight" not in nwd
    assert "mask_token" in _pre().no_weight_decay()
    for n, _ in c.named_parameters():
        assert 0 <= c.layer_id(n) < c.num_layers


def test_wrong_input_size_is_a_clear_error():
    c = build_classifier("custom", num_classes=2, **TINY, **SMALL)
    with pytest.raises(ValueError, match="num_frames=8"):
        c(torch.randn(1, 3, 8, 32, 32))


def test_own_checkpoint_round_trip(tmp_path):
    m = _pre(norm_pix_loss=False).eval()
    p = save_checkpoint(m, tmp_path / "ck", config={"model": {"arch": "custom"}}, extra={"epoch": 3})
    assert p.suffix == ".safetensors" and p.with_suffix(".json").exists()
    m2 = load_checkpoint(p)
    assert not m2.training and m2.spec == m.spec and m2.checkpoint_info["extra"] == {"epoch": 3}
    v, mask = _video(), _mask()
    assert torch.equal(m(v, mask)[1], m2(v, mask)[1])
    # pretrain checkpoint -> classifier: encoder copied, fresh head
    c = load_checkpoint(p, kind="classifier", num_classes=5, drop_path=0.1)
    assert c.spec.drop_path == 0.1 and c.head.out_features == 5
    assert torch.equal(c.encoder.blocks[1].mlp.fc2.weight, m.encoder.blocks[1].mlp.fc2.weight)
    assert "head.weight" in c.checkpoint_info["initialised"]
    # other frame count: table rebuilt
    c8 = load_checkpoint(p, kind="classifier", num_classes=5, num_frames=8)
    assert c8(torch.randn(1, 3, 8, 32, 32)).shape == (1, 5)
    c2 = build_classifier("custom", num_classes=5, **TINY, **SMALL)
    assert "head.weight" in init_from(c2, m)["initialised"]
    assert torch.equal(c2.encoder.patch_embed.proj.weight, m.encoder.patch_embed.proj.weight)


def test_official_pth_nesting_args_and_refusal(tmp_path):
    m = _pre().eval()
    p = save_official(m, tmp_path / "pre.pth")
    sd = torch.load(p, weights_only=True)["model"]
    assert "encoder.blocks.0.attn.q_bias" in sd and "encoder_to_decoder.weight" in sd
    args = argparse.Namespace(num_frames=4, input_size=32, normlize_target=True, model="pretrain_videomae")
    torch.save({"module": {"module." + k: v for k, v in sd.items()}, "args": args, "epoch": 1}, tmp_path / "ds.pth")
    for f in (p, tmp_path / "ds.pth"):
        with pytest.raises(CheckpointError, match="num_heads"):
            load_checkpoint(f)
        m2 = load_checkpoint(f, num_frames=None if f != p else 4, img_size=None if f != p else 32,
                             num_heads=2, decoder_heads=2)
        assert m2.spec.norm_pix_loss and m2.spec.num_frames == 4 and m2.spec.img_size == 32
        v, mask = _video(), _mask()
        assert torch.equal(m(v, mask)[1], m2(v, mask)[1])
    c = build_classifier("custom", num_classes=3, **TINY, **SMALL).eval()
    save_official(c, tmp_path / "ft.pth")
    sd = torch.load(tmp_path / "ft.pth", weights_only=True)["model"]
    assert "blocks.0.attn.qkv.weight" in sd and "head.weight" in sd and "fc_norm.weight" in sd
    c2 = load_checkpoint(tmp_path / "ft.pth", num_frames=4, img_size=32, num_heads=2)
    v = _video()
    assert torch.equal(c(v), c2(v))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model": sd, "x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_checkpoint(tmp_path / "evil.pth")


def test_init_from_pretrainer_into_pretrainer_copies_decoder():
    src, dst = _pre(), _pre()
    torch.nn.init.normal_(src.decoder.head.weight)
    assert init_from(dst, src)["initialised"] == []
    assert torch.equal(dst.decoder.head.weight, src.decoder.head.weight)


def test_torch_compile_traces_and_matches_eager():
    """Dynamo + AOT autograd (backend aot_eager keeps it fast; inductor was checked by hand,
    see docs/models.md). The mask-count check is the one graph break."""
    m = _pre()
    v, mask = _video(), _mask()
    ref, _ = m(v, mask)
    loss, _ = torch.compile(m, backend="aot_eager")(v, mask)
    loss.backward()
    assert abs(loss.item() - ref.item()) < 1e-6


def test_patchify_round_trip():
    m = _pre()
    v = _video()
    assert torch.equal(m.unpatchify(m.patchify(v).flatten(2)), v)


def test_cli_export_round_trip(tmp_path, capsys):
    from mgm.cli import main

    c = build_classifier("custom", num_classes=3, **TINY, **SMALL).eval()
    src = save_checkpoint(c, tmp_path / "c")
    assert main(["export", str(src), "--to", "hf", str(tmp_path / "hf")]) == 0
    assert main(["export", str(tmp_path / "hf"), "--to", "official", str(tmp_path / "c.pth")]) == 0
    assert main(["export", str(tmp_path / "nope"), "--to", "hf", str(tmp_path / "x")]) == 2
    assert "no such file" in capsys.readouterr().err
    v = _video()
    back = load_checkpoint(tmp_path / "hf")
    assert torch.equal(back(v), c(v))
    off = load_checkpoint(tmp_path / "c.pth", num_frames=4, img_size=32, num_heads=2)
    assert (off(v) - c(v)).abs().max() < 1e-6


def test_time_pooling(tmp_path):
    """pool="time": per-temporal-index spatial means, fc_norm, concatenated (T'·D features)."""
    from mgm.models.hf_export import export_hf

    torch.manual_seed(0)
    mean = build_classifier("custom", num_classes=3, **TINY, **SMALL)
    timed = build_classifier("custom", num_classes=3, pool="time", **TINY, **SMALL)
    timed.load_state_dict({k: v for k, v in mean.state_dict().items() if not k.startswith("head.")}, strict=False)
    mean.eval(), timed.eval()
    x = _video()
    with torch.no_grad():
        fm, ft = mean.forward_features(x), timed.forward_features(x)
        assert fm.shape == (2, 32) and ft.shape == (2, 2 * 32) and timed.num_features == 64
        assert timed(x).shape == (2, 3)
        # the mean of the per-index pooled tokens is the mean-pooled token (before fc_norm)
        enc = timed.encoder(x)
        torch.testing.assert_close(enc.reshape(2, 2, -1, 32).mean(2).mean(1), enc.mean(1))
        per_index = timed.fc_norm(enc.reshape(2, 2, -1, 32).mean(2))          # (B, T', D)
        torch.testing.assert_close(ft, per_index.flatten(1))
    # a pretrainer's encoder loads into a time-pooled classifier; formats without it refuse it
    path = save_checkpoint(_pre(), tmp_path / "pre.safetensors")
    clf = load_checkpoint(path, kind="classifier", num_classes=3, pool="time")
    assert clf.spec.pool == "time" and clf.head.in_features == 64
    with pytest.raises(CheckpointError, match="pool"):
        export_hf(clf, tmp_path / "hf")
    with pytest.raises(CheckpointError, match="pool"):
        save_official(clf, tmp_path / "clf.pth")
    assert load_checkpoint(save_checkpoint(clf, tmp_path / "clf.safetensors")).spec.pool == "time"
    with pytest.raises(ValueError, match="pool"):
        build_classifier("custom", num_classes=3, pool="max", **TINY, **SMALL)
