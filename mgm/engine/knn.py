"""k-nearest-neighbour classification on frozen features (cosine similarity), the
training-free companion of the linear probe.

    top1 = knn_top1(train_feats, train_labels, test_feats, test_labels, k=5)

Each test feature votes with its ``k`` most similar training features, each vote weighted by
``exp(similarity / temperature)`` (DINO's weighted k-NN); ties in the vote go to the lower label.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def knn_predict(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                k: int = 5, temperature: float = 0.07, num_classes: int | None = None) -> torch.Tensor:
    """Predicted labels (N_test,) from (N_train, D) / (N_test, D) features."""
    if train_feats.shape[0] == 0:
        raise ValueError("k-NN needs at least one training feature")
    k = min(k, train_feats.shape[0])
    num_classes = num_classes or int(train_labels.max()) + 1
    a = F.normalize(train_feats.float(), dim=1)
    b = F.normalize(test_feats.float(), dim=1)
    sim, idx = (b @ a.T).topk(k, dim=1)                      # (N_test, k)
    votes = torch.zeros(b.shape[0], num_classes).scatter_add_(1, train_labels[idx].long(), (sim / temperature).exp())
    return votes.argmax(1)


def knn_top1(train_feats, train_labels, test_feats, test_labels, k: int = 5, temperature: float = 0.07) -> float:
    """Top-1 accuracy (%) of :func:`knn_predict`."""
    n = int(max(train_labels.max(), test_labels.max())) + 1
    pred = knn_predict(train_feats, train_labels, test_feats, k, temperature, n)
    return float((pred == test_labels.long()).float().mean() * 100)
