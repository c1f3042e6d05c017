"""``VideoMAESpec``: everything needed to rebuild a VideoMAE model, saved next to our checkpoints.

The architecture it describes is ``mgm.models.vit``'s (its module docstring is the exact
definition); ``mgm.models.formats`` maps it to and from transformers' ``config.json`` and the
official checkpoints' shapes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from mgm.models.options import ARCHS, ATTENTIONS, POOLS


@dataclass
class VideoMAESpec:
    """Everything needed to rebuild a model; saved next to our checkpoints.

    The first fields mirror ``mgm.config.ModelConfig``; the rest make custom sizes and
    imported checkpoints (other eps, no encoder norm, ...) reproducible.
    """

    arch: str = "vit_base"
    num_frames: int = 16
    img_size: int = 224
    tubelet: int = 2
    patch: int = 16
    decoder_depth: int = 4
    decoder_dim: int | None = None
    norm_pix_loss: bool = True
    attention: str = "joint"          # joint | divided
    pool: str = "mean"                # classifier features: mean | time (see the module doc)
    drop_path: float = 0.0
    grad_checkpointing: bool = False
    # explicit sizes (filled from ARCHS when None)
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    decoder_heads: int | None = None
    mlp_ratio: float = 4.0
    in_chans: int = 3
    qv_bias: bool = True
    norm_eps: float = 1e-6            # every block norm and encoder.norm
    head_norm_eps: float = 1e-6       # decoder.norm and fc_norm (transformers hard-codes 1e-5)
    encoder_norm: bool = True         # pretrainer: LayerNorm after the encoder (VideoMAE: yes)
    # classifier only
    num_classes: int = 0
    fc_drop: float = 0.0
    init_scale: float = 0.001         # head weight scale at init (VideoMAE fine-tuning default)

    def __post_init__(self):
        if self.arch in ARCHS:
            d, depth, heads, ddim, dheads = ARCHS[self.arch]
            self.embed_dim = self.embed_dim or d
            self.depth = self.depth or depth
            self.num_heads = self.num_heads or heads
            self.decoder_dim = self.decoder_dim or ddim
            self.decoder_heads = self.decoder_heads or dheads
        elif None in (self.embed_dim, self.depth, self.num_heads):
            raise ValueError(
                f"unknown arch {self.arch!r} (known: {', '.join(ARCHS)}); "
                "a custom arch needs embed_dim, depth and num_heads"
            )
        if self.decoder_dim is None:
            self.decoder_dim = self.embed_dim // 2
        if self.decoder_heads is None:
            self.decoder_heads = max(1, self.decoder_dim // 64)
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}, got {self.attention!r}")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {self.pool!r}")
        if self.num_frames % self.tubelet or self.img_size % self.patch:
            raise ValueError(
                f"num_frames={self.num_frames} must divide by tubelet={self.tubelet} and "
                f"img_size={self.img_size} by patch={self.patch}"
            )
        for dim, heads, what in ((self.embed_dim, self.num_heads, "embed_dim"),
                                 (self.decoder_dim, self.decoder_heads, "decoder_dim")):
            if dim % heads:
                raise ValueError(f"{what}={dim} is not a multiple of its {heads} heads")

    @property
    def grid(self) -> tuple[int, int, int]:
        return (self.num_frames // self.tubelet, self.img_size // self.patch, self.img_size // self.patch)

    @property
    def num_patches(self) -> int:
        t, h, w = self.grid
        return t * h * w

    @property
    def patch_dim(self) -> int:
        return self.in_chans * self.tubelet * self.patch * self.patch

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VideoMAESpec":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model spec keys: {', '.join(unknown)}")
        return cls(**d)
