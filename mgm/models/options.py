"""The names the model family accepts: architectures, attention kinds, pooling kinds.

No torch here: ``mgm.config`` checks ``model.arch`` / ``model.attention`` / ``model.pool``
against these without importing the model code.
"""
from __future__ import annotations

# name -> (embed_dim, depth, num_heads, default decoder_dim, default decoder_heads)
# small/base/large/huge decoders are VideoMAE's; vit_tiny's decoder (96 wide, 3 heads) is ours,
# VideoMAE publishes no tiny pretrainer.
ARCHS = {
    "vit_tiny": (192, 12, 3, 96, 3),
    "vit_small": (384, 12, 6, 192, 3),
    "vit_base": (768, 12, 12, 384, 6),
    "vit_large": (1024, 24, 16, 512, 8),
    "vit_huge": (1280, 32, 16, 640, 8),
}
ATTENTIONS = ("joint", "divided")     # joint space-time | TimeSformer divided (paper Table 4a)
POOLS = ("mean", "time")              # classifier features: mean of all tokens | per time index
