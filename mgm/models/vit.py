"""The VideoMAE model family in one file: masked autoencoder (pretrainer) and classifier.

The definition follows VideoMAE exactly (MCG-NJU/VideoMAE's modeling code; details and the
transformers differences in docs/models.md) so that its checkpoints load and results compare
with the literature:

* tubelet embedding: ``Conv3d`` with kernel = stride = (tubelet, patch, patch); tokens are
  flattened in (t, h, w) order;
* fixed 1-D sinusoid position table over the flattened token index (even dims sin, odd dims cos,
  interleaved), added after the embedding, never learned, never stored in checkpoints;
* pre-norm transformer blocks, LayerNorm eps 1e-6, fused ``qkv`` projection with a bias on q
  and v only (``q_bias``, ``v_bias``; k has none), exact (erf) GELU, stochastic depth;
* the encoder sees only the visible tokens, kept in increasing token index order;
* the decoder input is ``[visible + pos(visible), mask_token + pos(masked)]``; only the masked
  outputs go through ``decoder.norm`` and ``decoder.head``;
* target: un-normalise (ImageNet mean/std), cut into tubelet patches ``(t p p c)``, optionally
  normalise each patch per channel with its mean and unbiased std (``/(std + 1e-6)``), MSE over
  the masked tokens;
* classifier: mean of all tokens -> ``fc_norm`` -> (dropout) -> ``head`` (``pool="mean"``,
  VideoMAE's); ``pool="time"`` keeps the time axis: the spatial mean of each temporal index ->
  ``fc_norm`` -> concatenated over time (T'·D features), so the order of events (left vs right,
  towards vs away) survives pooling. Same weights but the head's input size.

The parts (embedding, attention, block) are in ``mgm.models.layers``; the fields a model is
built from (``VideoMAESpec``, saved with every checkpoint) in ``mgm.models.spec``. Attention is
``torch.nn.functional.scaled_dot_product_attention``. ``attention="divided"``
gives TimeSformer-style divided space-time blocks (temporal attention, then spatial attention,
then MLP) for the paper's backbone ablation; it works on any subset of visible tokens (through
boolean attention masks) and on the full grid (through reshapes). The pretraining decoder is
always a joint-attention ViT, as in VideoMAE.

Parameter names (used by layer-wise lr decay, see ``layer_id``)::

    encoder.patch_embed.proj.{weight,bias}                 layer 0
    encoder.blocks.{i}.{norm1,attn.qkv,attn.q_bias,attn.v_bias,attn.proj,norm2,mlp.fc1,mlp.fc2}
    encoder.blocks.{i}.{temporal_norm,temporal_attn.*,temporal_fc}   (divided only)
                                                           layer i + 1
    encoder.norm                (pretrainer only)          last layer
    encoder_to_decoder, mask_token, decoder.*  (pretrainer) last layer
    fc_norm, head              (classifier)                last layer
"""
from __future__ import annotations

from dataclasses import fields

import torch
import torch.nn.functional as F
from torch import nn

from mgm.data.transforms import MEAN, STD     # what the input was normalised with (the pixel targets undo it)
from mgm.models.layers import Block, Layout, PatchEmbed, run_blocks, sinusoid_table
from mgm.models.spec import VideoMAESpec


def _strip_wrappers(name: str) -> str:
    for prefix in ("_orig_mod.", "module."):
        while name.startswith(prefix):
            name = name[len(prefix):]
    return name


# ---------------------------------------------------------------- encoder / decoder


class Encoder(nn.Module):
    """Tubelet embedding + sinusoid positions + blocks (+ final norm)."""

    def __init__(self, spec: VideoMAESpec, final_norm: bool):
        super().__init__()
        self.spec = spec
        self.grid = spec.grid
        self.patch_embed = PatchEmbed(spec.in_chans, spec.embed_dim, spec.tubelet, spec.patch)
        self.register_buffer("pos_embed", sinusoid_table(spec.num_patches, spec.embed_dim)[None], persistent=False)
        dpr = torch.linspace(0, spec.drop_path, spec.depth).tolist()
        self.blocks = nn.ModuleList(
            Block(spec.embed_dim, spec.num_heads, spec.mlp_ratio, spec.qv_bias, dpr[i], spec.norm_eps,
                  divided=spec.attention == "divided")
            for i in range(spec.depth)
        )
        self.norm = nn.LayerNorm(spec.embed_dim, eps=spec.norm_eps) if final_norm else nn.Identity()
        self.grad_checkpointing = spec.grad_checkpointing

    def check_input(self, video: torch.Tensor) -> None:
        s = self.spec
        if video.ndim != 5 or video.shape[1] != s.in_chans:
            raise ValueError(f"expected video of shape (B, {s.in_chans}, T, H, W), got {tuple(video.shape)}")
        _, _, T, H, W = video.shape
        if (T, H, W) != (s.num_frames, s.img_size, s.img_size):
            raise ValueError(
                f"model built for {s.num_frames} frames at {s.img_size}x{s.img_size}, got {T} frames at "
                f"{H}x{W}; build or load it with num_frames={T}, img_size={H} (position tables are rebuilt)"
            )

    def forward(self, video: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens (B, n, D) for the visible token ids ``ids_keep`` (B, n) in increasing order, or all."""
        self.check_input(video)
        x = self.patch_embed(video)
        x = x + self.pos_embed.to(dtype=x.dtype)
        if ids_keep is not None:
            x = torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, x.shape[-1]))
        layout = Layout(self.grid, ids_keep) if self.spec.attention == "divided" else None
        x = run_blocks(self.blocks, x, layout, self.grad_checkpointing and self.training)
        return self.norm(x)

    @torch.no_grad()
    def last_attention(self, video: torch.Tensor) -> torch.Tensor:
        """Attention weights (B, heads, N, N) of the last block over all tokens (joint attention
        only; for figures such as the paper's Fig. 7)."""
        if self.spec.attention != "joint":
            raise ValueError("last_attention needs attention='joint'")
        self.check_input(video)
        x = self.patch_embed(video) + self.pos_embed.to(dtype=video.dtype)
        for blk in self.blocks[:-1]:
            x = blk(x)
        return self.blocks[-1].attn.weights(self.blocks[-1].norm1(x))


class Decoder(nn.Module):
    def __init__(self, spec: VideoMAESpec):
        super().__init__()
        dpr = torch.linspace(0, spec.drop_path, spec.decoder_depth).tolist()
        self.blocks = nn.ModuleList(
            Block(spec.decoder_dim, spec.decoder_heads, spec.mlp_ratio, spec.qv_bias, dpr[i], spec.norm_eps)
            for i in range(spec.decoder_depth)
        )
        self.norm = nn.LayerNorm(spec.decoder_dim, eps=spec.head_norm_eps)
        self.head = nn.Linear(spec.decoder_dim, spec.patch_dim)
        self.grad_checkpointing = spec.grad_checkpointing

    def forward(self, x: torch.Tensor, num_masked: int) -> torch.Tensor:
        x = run_blocks(self.blocks, x, None, self.grad_checkpointing and self.training)
        return self.head(self.norm(x[:, -num_masked:]))


# ---------------------------------------------------------------- shared helpers


class _VideoMAEBase(nn.Module):
    spec: VideoMAESpec
    encoder: Encoder

    @property
    def num_layers(self) -> int:
        """Number of distinct ``layer_id`` values: depth + 2 (0 = embedding, depth + 1 = head)."""
        return self.spec.depth + 2

    def layer_id(self, name: str) -> int:
        """Layer of a parameter name for layer-wise lr decay (VideoMAE/BEiT rule).

        ``encoder.patch_embed.*`` -> 0, ``encoder.blocks.{i}.*`` -> i + 1, anything else (final
        norms, heads, decoder, mask token) -> ``num_layers - 1``. The lr scale is then
        ``decay ** (num_layers - 1 - layer_id)``. ``module.`` / ``_orig_mod.`` prefixes are ignored.
        """
        name = _strip_wrappers(name)
        if name.startswith("encoder.patch_embed.") or name.startswith("encoder.pos_embed"):
            return 0
        if name.startswith("encoder.blocks."):
            return int(name.split(".")[2]) + 1
        return self.num_layers - 1

    def no_weight_decay(self) -> set[str]:
        """Parameter names to exclude from weight decay: biases, norm weights (all 1-D) and tokens.

        (The position tables are fixed buffers, not parameters.)
        """
        return {n for n, p in self.named_parameters() if p.ndim <= 1 or n.endswith(".bias") or "token" in n}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.spec.grad_checkpointing = enable
        for m in self.modules():
            if hasattr(m, "grad_checkpointing") and m is not self:
                m.grad_checkpointing = enable


def _init_xavier(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def _init_trunc_normal(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02, a=-0.02, b=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def _zero_temporal_fc(model: nn.Module) -> None:
    # a divided block starts as a spatial-only block (TimeSformer's initialisation idea)
    for m in model.modules():
        if isinstance(m, Block) and m.divided:
            nn.init.zeros_(m.temporal_fc.weight)
            nn.init.zeros_(m.temporal_fc.bias)


def patch_statistics(patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-patch, per-channel mean and scale (unbiased std + 1e-6) over the t*p*p pixels of
    (B, N, t*p*p, C) patches: the normalised target is (patch - mean) / scale, so a prediction
    un-normalises as pred * scale + mean."""
    mean = patches.mean(dim=-2, keepdim=True)
    return mean, patches.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6


def visible_and_masked_ids(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(ids_visible, ids_masked, num_masked) from a (B, N) bool mask, both in increasing order.

    Raises ValueError when samples mask different numbers of tokens (VideoMAE-style code would
    silently mix tokens between samples), or when no / every token is masked.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be (B, N), got shape {tuple(mask.shape)}")
    mask = mask.bool()
    counts = mask.sum(1).tolist()  # one host sync
    if len(set(counts)) != 1:
        raise ValueError(
            f"every sample must mask the same number of tokens, got masked counts {counts}; "
            "the encoder batches visible tokens"
        )
    num_masked, n = counts[0], mask.shape[1]
    if num_masked == 0 or num_masked == n:
        raise ValueError(f"mask hides {num_masked} of {n} tokens; pretraining needs some masked and some visible")
    ids = torch.argsort(mask.to(torch.int32), dim=1, stable=True)
    return ids[:, : n - num_masked], ids[:, n - num_masked:], num_masked


# ---------------------------------------------------------------- models


class VideoMAEPretrainer(_VideoMAEBase):
    """Masked autoencoder: ``loss, pred = model(video, mask)``.

    video: (B, C, T, H, W), ImageNet-normalised. mask: (B, N) bool, True = masked (hidden from
    the encoder), N = T/tubelet * H/patch * W/patch, same masked count in every sample; it is
    moved to the video's device if needed. pred: (B, num_masked, tubelet*patch*patch*C), the
    masked tokens in increasing index order, pixels flattened as (t, p, p, c).
    """

    def __init__(self, spec: VideoMAESpec):
        super().__init__()
        self.spec = spec
        self.encoder = Encoder(spec, final_norm=spec.encoder_norm)
        self.encoder_to_decoder = nn.Linear(spec.embed_dim, spec.decoder_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, spec.decoder_dim))
        self.register_buffer("decoder_pos_embed", sinusoid_table(spec.num_patches, spec.decoder_dim), persistent=False)
        self.decoder = Decoder(spec)
        self.register_buffer("pixel_mean", torch.tensor(MEAN).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(STD).view(1, 3, 1, 1, 1), persistent=False)
        self.apply(_init_xavier)
        nn.init.trunc_normal_(self.mask_token, std=0.02, a=-0.02, b=0.02)
        _zero_temporal_fc(self)

    @property
    def norm_pix_loss(self) -> bool:
        return self.spec.norm_pix_loss

    def patchify(self, video: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, N, t*p*p, C) patches, tokens in (t, h, w) order."""
        B, C, T, H, W = video.shape
        t, p = self.spec.tubelet, self.spec.patch
        x = video.reshape(B, C, T // t, t, H // p, p, W // p, p)
        x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)
        return x.reshape(B, (T // t) * (H // p) * (W // p), t * p * p, C)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """Inverse of ``patchify`` for (B, N, t*p*p*C) -> (B, C, T, H, W)."""
        s = self.spec
        T, Hp, Wp = s.grid
        t, p, C = s.tubelet, s.patch, s.in_chans
        B = patches.shape[0]
        x = patches.reshape(B, T, Hp, Wp, t, p, p, C).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.reshape(B, C, T * t, Hp * p, Wp * p)

    @torch.no_grad()
    def targets(self, video: torch.Tensor, ids_masked: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruction targets (B, n, t*p*p*C) in float32 for ``ids_masked`` (or all tokens)."""
        if self.spec.in_chans != 3:
            raise ValueError("targets un-normalise with ImageNet mean/std, which needs 3 channels")
        frames = video.float() * self.pixel_std + self.pixel_mean  # back to [0, 1]
        patches = self.patchify(frames)
        if ids_masked is not None:
            patches = torch.gather(patches, 1, ids_masked[:, :, None, None].expand(-1, -1, *patches.shape[2:]))
        if self.spec.norm_pix_loss:
            mean, scale = patch_statistics(patches)
            patches = (patches - mean) / scale
        return patches.flatten(2)

    def forward(self, video: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.encoder.check_input(video)
        if mask.shape != (video.shape[0], self.spec.num_patches):
            raise ValueError(
                f"mask must be (B, N) = ({video.shape[0]}, {self.spec.num_patches}), got {tuple(mask.shape)}"
            )
        mask = mask.to(video.device, non_blocking=True)
        ids_vis, ids_masked, num_masked = visible_and_masked_ids(mask)
        x = self.encoder(video, ids_vis)
        x = self.encoder_to_decoder(x)
        pos = self.decoder_pos_embed.to(dtype=x.dtype)
        x = torch.cat([x + pos[ids_vis], self.mask_token.to(x.dtype) + pos[ids_masked]], dim=1)
        pred = self.decoder(x, num_masked)
        loss = F.mse_loss(pred.float(), self.targets(video, ids_masked))
        return loss, pred


class VideoMAEClassifier(_VideoMAEBase):
    """Fine-tuning / linear-probe model: ``logits = c(video)``, ``feats = c.forward_features(video)``."""

    def __init__(self, spec: VideoMAESpec):
        super().__init__()
        self.spec = spec
        self.encoder = Encoder(spec, final_norm=False)
        self.fc_norm = nn.LayerNorm(spec.embed_dim, eps=spec.head_norm_eps)
        self.head_drop = nn.Dropout(spec.fc_drop)
        self.head = nn.Linear(self.num_features, spec.num_classes) if spec.num_classes > 0 else nn.Identity()
        self.apply(_init_trunc_normal)
        if isinstance(self.head, nn.Linear):
            with torch.no_grad():
                self.head.weight.mul_(spec.init_scale)
                self.head.bias.mul_(spec.init_scale)
        _zero_temporal_fc(self)

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def num_features(self) -> int:
        """D (``pool="mean"``) or T'·D (``pool="time"``)."""
        return self.spec.embed_dim * (self.spec.grid[0] if self.spec.pool == "time" else 1)

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, num_features), see ``pool`` in the module doc."""
        x = self.encoder(video)
        if self.spec.pool == "mean":
            return self.fc_norm(x.mean(dim=1))
        t = self.spec.grid[0]
        return self.fc_norm(x.reshape(x.shape[0], t, -1, x.shape[-1]).mean(dim=2)).flatten(1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_drop(self.forward_features(video)))

    def reset_head(self, num_classes: int) -> None:
        """Replace the head by a fresh one (VideoMAE init) for ``num_classes`` outputs."""
        self.spec.num_classes = num_classes
        head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            _init_trunc_normal(head)
            with torch.no_grad():
                head.weight.mul_(self.spec.init_scale)
        self.head = head.to(self.fc_norm.weight.device)


# ---------------------------------------------------------------- builders


def _spec(arch: str, **kwargs) -> VideoMAESpec:
    return VideoMAESpec(arch=arch, **kwargs)


def build_pretrainer(arch: str = "vit_base", **kwargs) -> VideoMAEPretrainer:
    """VideoMAE pretrainer. Keyword arguments are ``VideoMAESpec`` fields, e.g. num_frames=16,
    img_size=224, tubelet=2, patch=16, decoder_depth=4, decoder_dim=None, norm_pix_loss=True,
    attention="joint", drop_path=0.0, grad_checkpointing=False."""
    kwargs.pop("num_classes", None)
    return VideoMAEPretrainer(_spec(arch, **kwargs))


def build_classifier(arch: str = "vit_base", num_classes: int = 400, **kwargs) -> VideoMAEClassifier:
    """VideoMAE classifier (mean pool -> fc_norm -> head). Keyword arguments are ``VideoMAESpec``
    fields; decoder fields are accepted and ignored so one ModelConfig builds both models."""
    return VideoMAEClassifier(_spec(arch, num_classes=num_classes, **kwargs))


def build_model(model_cfg, kind: str = "pretrainer", num_classes: int = 0):
    """A fresh model from an ``mgm.config.ModelConfig`` (or any object / dict with its fields):
    every field that is also a ``VideoMAESpec`` field is used (so a new config field that the
    model knows reaches it), the others (``init``) are not the model's business."""
    d = model_cfg if isinstance(model_cfg, dict) else {f.name: getattr(model_cfg, f.name) for f in fields(model_cfg)}
    d = {k: v for k, v in d.items() if k in {f.name for f in fields(VideoMAESpec)}}
    arch = d.pop("arch", "vit_base")
    if kind == "pretrainer":
        return build_pretrainer(arch, **d)
    if kind == "classifier":
        d.pop("num_classes", None)
        return build_classifier(arch, num_classes=num_classes, **d)
    raise ValueError(f"kind must be 'pretrainer' or 'classifier', got {kind!r}")
