"""A tiny array namespace over numpy and torch, so the mask builders are written once.

The builders in :mod:`mgm.masking.strategies` only use Python operators on arrays and the
functions below. Every value that decides a mask is computed in float64 with the same
sequence of IEEE operations in both backends (no reductions whose order could differ are
used on non-exact values), which is what makes the torch batched masks bit-equal to the
numpy per-clip ones for the same random draws.
"""
from __future__ import annotations

import numpy as np


class NumpyXP:
    name = "numpy"

    def __init__(self):
        self.f64 = np.float64
        self.i64 = np.int64

    def asf64(self, x):
        return np.asarray(x, dtype=np.float64)

    def zeros(self, shape, dtype=np.float64):
        return np.zeros(shape, dtype=dtype)

    def arange(self, n):
        return np.arange(n, dtype=np.float64)

    def floor(self, x):
        return np.floor(x)

    def sqrt(self, x):
        return np.sqrt(x)

    def clip(self, x, lo, hi):
        return np.minimum(np.maximum(x, lo), hi)

    def where(self, c, a, b):
        return np.where(c, a, b)

    def maximum(self, a, b):
        return np.maximum(a, b)

    def minimum(self, a, b):
        return np.minimum(a, b)

    def remainder(self, a, b):
        return np.remainder(a, b)

    def argsort(self, x):
        """Stable ascending argsort along the last axis."""
        return np.argsort(x, axis=-1, kind="stable")

    def take(self, x, idx):
        """take_along_axis on the last axis (leading dims broadcast)."""
        return np.take_along_axis(x, idx, axis=-1)

    def argmax(self, x):
        """Index of the first maximum along the last axis."""
        return np.argmax(x, axis=-1)

    def concat(self, xs, axis):
        return np.concatenate(xs, axis=axis)

    def select_first(self, order, k, n):
        """Boolean mask over the last axis (size n) that is True at order[..., :k]."""
        out = np.zeros(order.shape[:-1] + (n,), dtype=bool)
        np.put_along_axis(out, order[..., :k], True, axis=-1)
        return out

    def any(self, x, axis):
        return np.any(x, axis=axis)

    def select_smallest(self, keys, k):
        """Bool mask of the k smallest of *unique* int64 keys along the last axis."""
        n = keys.shape[-1]
        if k >= n:
            return np.ones(keys.shape, bool)
        kth = np.partition(keys, k - 1, axis=-1)[..., k - 1:k]
        return keys <= kth

    def float_key(self, u, shift_bits):
        """floor(u · 2^q) · 2^shift + index: unique int64 keys ordered like u (u in [0, 1))."""
        q = float(2 ** min(52, 62 - shift_bits))
        return np.floor(u * q).astype(np.int64) * (1 << shift_bits) + np.arange(u.shape[-1], dtype=np.int64)

    def f32_bits(self, x):
        """int64 bit patterns of x as float32 (order-preserving for x >= 0; -0 → 0)."""
        return np.maximum(np.asarray(x, np.float32).view(np.int32), 0).astype(np.int64)

    def ranks(self, order):
        """Inverse permutation along the last axis: ranks[..., order[..., i]] = i."""
        r = np.empty_like(order)
        np.put_along_axis(r, order, np.broadcast_to(np.arange(order.shape[-1]), order.shape), axis=-1)
        return r

    def cumsum(self, x, axis):
        return np.cumsum(x, axis=axis)

    def last_true_index(self, found):
        """(B, T) bool → (B, T) int: index of the last True at or before t, -1 if none."""
        t = found.shape[1]
        return np.maximum.accumulate(np.where(found, np.arange(t), -1), axis=1)

    def take_rows(self, x, idx):
        """x (B, T, P), idx (B, T) int in [0, T) → x[b, idx[b, t], :]."""
        return np.take_along_axis(x, idx[:, :, None], axis=1)

    def sum(self, x, axis):
        return np.sum(x, axis=axis)

    def stack(self, xs, axis):
        return np.stack(xs, axis=axis)

    def to_int(self, x):
        return x.astype(np.int64)

    def to_f64(self, x):
        return np.asarray(x, dtype=np.float64)


class TorchXP:
    name = "torch"

    def __init__(self, device):
        import torch

        self.torch = torch
        self.device = device
        self.f64 = torch.float64
        self.i64 = torch.int64

    def asf64(self, x):
        return self.torch.as_tensor(x, dtype=self.f64, device=self.device)

    def zeros(self, shape, dtype=None):
        return self.torch.zeros(shape, dtype=dtype or self.f64, device=self.device)

    def arange(self, n):
        return self.torch.arange(n, dtype=self.f64, device=self.device)

    def floor(self, x):
        return self.torch.floor(x)

    def sqrt(self, x):
        return self.torch.sqrt(x)

    def clip(self, x, lo, hi):
        t = self.torch
        lo = lo if t.is_tensor(lo) else t.tensor(lo, dtype=x.dtype, device=x.device)
        hi = hi if t.is_tensor(hi) else t.tensor(hi, dtype=x.dtype, device=x.device)
        return t.minimum(t.maximum(x, lo), hi)

    def where(self, c, a, b):
        t = self.torch
        ref = a if t.is_tensor(a) else b
        if not t.is_tensor(a):
            a = t.tensor(a, dtype=ref.dtype, device=ref.device)
        if not t.is_tensor(b):
            b = t.tensor(b, dtype=ref.dtype, device=ref.device)
        return t.where(c, a, b)

    def maximum(self, a, b):
        return self.torch.maximum(a, b if self.torch.is_tensor(b) else self.torch.tensor(b, dtype=a.dtype, device=a.device))

    def minimum(self, a, b):
        return self.torch.minimum(a, b if self.torch.is_tensor(b) else self.torch.tensor(b, dtype=a.dtype, device=a.device))

    def remainder(self, a, b):
        return self.torch.remainder(a, b)

    def argsort(self, x):
        return self.torch.sort(x, dim=-1, stable=True).indices

    def take(self, x, idx):
        shape = self.torch.broadcast_shapes(x.shape[:-1], idx.shape[:-1])
        return self.torch.gather(x.expand(shape + x.shape[-1:]), -1, idx.expand(shape + idx.shape[-1:]))

    def argmax(self, x):
        return self.torch.argmax(x, dim=-1)   # documented: first occurrence of the maximum

    def concat(self, xs, axis):
        return self.torch.cat(xs, dim=axis)

    def select_first(self, order, k, n):
        out = self.torch.zeros(order.shape[:-1] + (n,), dtype=self.torch.bool, device=order.device)
        return out.scatter_(-1, order[..., :k], True)

    def any(self, x, axis):
        return self.torch.any(x, dim=axis) if isinstance(axis, int) else x.flatten(-len(axis)).any(-1)

    def select_smallest(self, keys, k):
        t = self.torch
        n = keys.shape[-1]
        if k >= n:
            return t.ones(keys.shape, dtype=t.bool, device=keys.device)
        idx = t.topk(keys, k, dim=-1, largest=False, sorted=False).indices
        return t.zeros(keys.shape, dtype=t.bool, device=keys.device).scatter_(-1, idx, True)

    def float_key(self, u, shift_bits):
        t = self.torch
        q = float(2 ** min(52, 62 - shift_bits))
        return (t.floor(u * q).to(t.int64) * (1 << shift_bits)
                + t.arange(u.shape[-1], dtype=t.int64, device=u.device))

    def f32_bits(self, x):
        t = self.torch
        return t.clamp_min(x.to(t.float32).view(t.int32), 0).to(t.int64)

    def ranks(self, order):
        t = self.torch
        ar = t.arange(order.shape[-1], device=order.device).expand(order.shape)
        return t.empty_like(order).scatter_(-1, order, ar)

    def cumsum(self, x, axis):
        return self.torch.cumsum(x, dim=axis)

    def last_true_index(self, found):
        t = found.shape[1]
        ar = self.torch.arange(t, device=found.device).expand_as(found)
        neg = self.torch.full_like(ar, -1)
        return self.torch.cummax(self.torch.where(found, ar, neg), dim=1).values

    def take_rows(self, x, idx):
        return self.torch.gather(x, 1, idx[:, :, None].expand(-1, -1, x.shape[-1]))

    def sum(self, x, axis):
        return self.torch.sum(x, dim=axis)

    def stack(self, xs, axis):
        return self.torch.stack(xs, dim=axis)

    def to_int(self, x):
        return x.to(self.i64)

    def to_f64(self, x):
        return x.to(self.f64)
