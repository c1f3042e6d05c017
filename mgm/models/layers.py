"""The transformer parts of the VideoMAE model (``mgm.models.vit`` assembles them).

Position table, stochastic depth, tubelet embedding, attention (SDPA; fused ``qkv`` with a bias on
q and v only), MLP, the pre-norm block and, for divided space-time attention, the ``Layout`` that
says which tokens share a frame or a spatial position. Shapes and conventions are VideoMAE's; the
module doc of ``mgm.models.vit`` lists them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


def sinusoid_table(n_position: int, dim: int) -> torch.Tensor:
    """(n_position, dim) float32: angle pos / 10000^(2*(j//2)/dim); sin on even j, cos on odd j."""
    pos = torch.arange(n_position, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)
    angle = pos / torch.pow(torch.tensor(10000.0, dtype=torch.float64), 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.empty_like(angle)
    table[:, 0::2] = torch.sin(angle[:, 0::2])
    table[:, 1::2] = torch.cos(angle[:, 1::2])
    return table.float()


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the whole residual branch per sample, rescale the rest."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask.div_(keep)


class PatchEmbed(nn.Module):
    """(B, C, T, H, W) -> (B, N, D), tokens in (t, h, w) order."""

    def __init__(self, in_chans: int, dim: int, tubelet: int, patch: int):
        super().__init__()
        self.proj = nn.Conv3d(in_chans, dim, kernel_size=(tubelet, patch, patch), stride=(tubelet, patch, patch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention, fused qkv, bias on q and v only, SDPA kernel."""

    def __init__(self, dim: int, num_heads: int, qv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        if qv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.proj = nn.Linear(dim, dim)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v of ``x`` (B, N, D), each (B, heads, N, D / heads)."""
        B, N, D = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias)
        return qkv.reshape(B, N, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self.heads(x)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))

    @torch.no_grad()
    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The softmax attention weights (B, heads, N, N) this layer would use on ``x`` (no mask)."""
        q, k, _ = self.heads(x)
        return torch.softmax((q.float() @ k.float().transpose(-2, -1)) * (q.shape[-1] ** -0.5), dim=-1)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact (erf)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Layout:
    """Where the tokens of a sequence sit in the (T', H'W') grid, for divided attention.

    ``full=True``: all T'*S tokens in order, attention groups are made by reshaping.
    Otherwise boolean masks (B, 1, n, n) say which token pairs share a frame (spatial) or a
    spatial position (temporal); every token always sees itself, so no row is empty.
    """

    def __init__(self, grid: tuple[int, int, int], ids: torch.Tensor | None):
        self.t, self.s = grid[0], grid[1] * grid[2]
        self.full = ids is None
        if not self.full:
            t_idx, s_idx = ids // self.s, ids % self.s
            self.spatial_mask = (t_idx[:, :, None] == t_idx[:, None, :])[:, None]
            self.temporal_mask = (s_idx[:, :, None] == s_idx[:, None, :])[:, None]

    def spatial(self, attn: Attention, x: torch.Tensor) -> torch.Tensor:
        if not self.full:
            return attn(x, self.spatial_mask)
        B, N, D = x.shape
        return attn(x.reshape(B * self.t, self.s, D)).reshape(B, N, D)

    def temporal(self, attn: Attention, x: torch.Tensor) -> torch.Tensor:
        if not self.full:
            return attn(x, self.temporal_mask)
        B, N, D = x.shape
        y = x.reshape(B, self.t, self.s, D).transpose(1, 2).reshape(B * self.s, self.t, D)
        y = attn(y)
        return y.reshape(B, self.s, self.t, D).transpose(1, 2).reshape(B, N, D)


class Block(nn.Module):
    """Pre-norm transformer block; ``divided=True`` adds a temporal attention sub-block first."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qv_bias=True, drop_path=0.0, eps=1e-6, divided=False):
        super().__init__()
        self.divided = divided
        if divided:
            self.temporal_norm = nn.LayerNorm(dim, eps=eps)
            self.temporal_attn = Attention(dim, num_heads, qv_bias)
            self.temporal_fc = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor, layout: Layout | None = None) -> torch.Tensor:
        dp = lambda y: drop_path(y, self.drop_path, self.training)  # noqa: E731
        if self.divided:
            x = x + dp(self.temporal_fc(layout.temporal(self.temporal_attn, self.temporal_norm(x))))
            x = x + dp(layout.spatial(self.attn, self.norm1(x)))
        else:
            x = x + dp(self.attn(self.norm1(x)))
        return x + dp(self.mlp(self.norm2(x)))


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, layout: Layout | None, use_ckpt: bool) -> torch.Tensor:
    """The blocks in order; with ``use_ckpt`` each block's activations are recomputed in backward."""
    use_ckpt = use_ckpt and torch.is_grad_enabled()
    for blk in blocks:
        x = checkpoint(blk, x, layout, use_reentrant=False) if use_ckpt else blk(x, layout)
    return x
