"""Pieces of the demo's figures: the last-block attention hook and the reconstruction."""
from __future__ import annotations

import numpy as np
import torch


def test_last_attention_matches_sdpa():
    from mgm.models import build_classifier

    torch.manual_seed(0)
    m = build_classifier("vit_tiny", num_classes=0, num_frames=4, img_size=32, depth=2).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    w = m.encoder.last_attention(x)
    assert w.shape == (1, 3, 8, 8)
    torch.testing.assert_close(w.sum(-1), torch.ones(1, 3, 8))
    enc = m.encoder
    h = enc.blocks[0](enc.patch_embed(x) + enc.pos_embed)
    blk = enc.blocks[1]
    # the block's own output == x + attn (from these weights) + mlp
    xn = blk.norm1(h)
    B, N, D = xn.shape
    bias = torch.cat((blk.attn.q_bias, torch.zeros_like(blk.attn.v_bias), blk.attn.v_bias))
    v = torch.nn.functional.linear(xn, blk.attn.qkv.weight, bias).reshape(B, N, 3, 3, D // 3).permute(2, 0, 3, 1, 4)[2]
    att = blk.attn.proj((w @ v).transpose(1, 2).reshape(B, N, D))
    y = h + att
    y = y + blk.mlp(blk.norm2(y))
    torch.testing.assert_close(y, blk(h), atol=1e-5, rtol=1e-5)


def test_reconstruct_keeps_visible_patches_and_labels_target_stats():
    from mgm.models import build_pretrainer
    from mgm.experiments.figures import reconstruct

    torch.manual_seed(0)
    m = build_pretrainer("vit_tiny", num_frames=4, img_size=32, depth=1, decoder_depth=1)
    frames = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    from mgm.data.transforms import channels_first, normalize

    video = normalize(channels_first(frames))
    mask = np.zeros((2, 2, 2), bool)
    mask[:, 0, :] = True                       # top half masked
    r = reconstruct(m, video, mask)
    orig = frames.astype(np.float32) / 255
    np.testing.assert_allclose(r["original"], orig, atol=2e-5)
    np.testing.assert_allclose(r["recon_target_stats"][:, 16:], orig[:, 16:], atol=2e-5)   # visible half
    np.testing.assert_allclose(r["masked"][:, :16], 0.5)
    # masked patches: per-patch mean equals the target's (the labelled use of target statistics)
    np.testing.assert_allclose(r["recon_target_stats"][:2, :16, :16].mean((0, 1, 2)),
                               orig[:2, :16, :16].mean((0, 1, 2)), atol=0.08)
    assert np.isfinite(r["loss"])


def test_reconstruct_inverts_the_models_own_target_normalisation():
    """A decoder that predicts its normalised targets exactly is drawn as the original clip: the
    figure un-normalises with the statistics the model's targets divide by (one owner)."""
    from mgm.data.transforms import channels_first, normalize
    from mgm.experiments.figures import reconstruct
    from mgm.models import build_pretrainer
    from mgm.models.vit import visible_and_masked_ids

    torch.manual_seed(0)
    m = build_pretrainer("vit_tiny", num_frames=4, img_size=32, patch=8, depth=1, decoder_depth=1)
    m.forward = lambda video, mask: (torch.zeros(()), m.targets(video, visible_and_masked_ids(mask)[1]))
    frames = np.random.default_rng(1).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    mask = np.random.default_rng(2).random((2, 4, 4)) < 0.75
    r = reconstruct(m, normalize(channels_first(frames)), mask)
    np.testing.assert_allclose(r["recon_target_stats"], frames.astype(np.float32) / 255, atol=1e-4)


def test_trivial_loss_is_the_loss_of_a_model_that_predicts_nothing():
    """The report's reference is in the model's own target space: a decoder whose output is zero
    (each hidden patch predicted as its own mean, per-patch normalised targets) has exactly that
    loss, (n-1)/n for n pixels per patch and channel."""
    from mgm.data.transforms import channels_first, normalize
    from mgm.experiments.figures import trivial_loss
    from mgm.models import build_pretrainer

    torch.manual_seed(0)
    m = build_pretrainer("vit_tiny", num_frames=4, img_size=32, patch=8, depth=1, decoder_depth=1).eval()
    video = normalize(channels_first(np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)))
    mask = np.zeros((2, 4, 4), bool)
    mask[:, :3] = True
    with torch.no_grad():
        m.decoder.head.weight.zero_()
        m.decoder.head.bias.zero_()
        loss, _ = m(video[None], torch.as_tensor(mask.reshape(1, -1)))
    n = 2 * 8 * 8
    assert abs(trivial_loss(m, video, mask) - (n - 1) / n) < 1e-4
    assert abs(trivial_loss(m, video, mask) - float(loss)) < 1e-4
