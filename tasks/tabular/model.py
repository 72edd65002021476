"""Networks for tables: entity embeddings for categories, optional periodic numeric embeddings, an MLP or a
ResNet-style MLP, and a linear head sized from the problem and the loss.

- Entity embeddings (Guo & Berkhahn 2016): one ``nn.Embedding`` per categorical column with
  ``min(50, (cardinality + 1) // 2)`` dimensions, cardinality counting the unknown (0) and missing (1) rows.
  The unknown row starts at zero and only moves when training rows map to it (categories rarer than
  ``data.min_category_count``), so a category never seen in training contributes nothing.
- Periodic numeric embeddings (Gorishniy, Rubachev & Babenko, "On Embeddings for Numerical Features in Tabular
  Deep Learning", NeurIPS 2022, "PLR"): ``x -> ReLU(W [cos 2 pi c x, sin 2 pi c x] + b)`` per feature, with
  trainable frequencies ``c ~ N(0, sigma^2)``.
- MLP: ``[Linear -> norm -> ReLU -> Dropout] x num_layers``; ResNet (Gorishniy et al., "Revisiting Deep Learning
  Models for Tabular Data", NeurIPS 2021): ``Linear``, then ``x + Dropout(Linear(Dropout(ReLU(Linear(norm(x))))))``
  blocks, then ``norm -> ReLU`` before the head.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

ARCHS = ("mlp", "resnet")
NORMS = ("batch", "layer", "none")
NUMERIC_EMBEDDINGS = ("none", "periodic")


def embedding_size(cardinality: int) -> int:
    """Entity-embedding width of a column with ``cardinality`` rows: ``min(50, (cardinality + 1) // 2)``."""
    return max(1, min(50, (cardinality + 1) // 2))


def norm_layer(kind: str, width: int) -> nn.Module:
    return {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}[kind](width) if kind != "none" else nn.Identity()


class PeriodicEmbedding(nn.Module):
    """Per-feature periodic embedding (PLR) of ``(N, F)`` numbers into ``(N, F * dim)``."""

    def __init__(self, num_features: int, frequencies: int = 16, sigma: float = 1.0, dim: int = 16) -> None:
        super().__init__()
        self.coefficients = nn.Parameter(torch.randn(num_features, frequencies) * sigma)
        bound = 1.0 / math.sqrt(2 * frequencies)
        self.weight = nn.Parameter(torch.empty(num_features, 2 * frequencies, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_features, dim).uniform_(-bound, bound))
        self.out_features = num_features * dim

    def forward(self, x: Tensor) -> Tensor:
        angle = 2 * math.pi * self.coefficients * x.unsqueeze(-1)  # (N, F, K)
        features = torch.cat((torch.cos(angle), torch.sin(angle)), dim=-1)  # (N, F, 2K)
        return torch.relu(torch.einsum("nfk,fkd->nfd", features, self.weight) + self.bias).flatten(1)


class FeatureEncoder(nn.Module):
    """Numeric columns (scaled, optionally periodic-embedded), missing indicators and entity embeddings side by side."""

    def __init__(
        self,
        num_numeric: int,
        num_indicators: int,
        cardinalities: Sequence[int],
        numeric_embedding: str = "none",
        frequencies: int = 16,
        sigma: float = 1.0,
        dim: int = 16,
    ) -> None:
        super().__init__()
        self.num_numeric = num_numeric
        self.periodic = (
            PeriodicEmbedding(num_numeric, frequencies, sigma, dim)
            if numeric_embedding == "periodic" and num_numeric
            else None
        )
        self.embeddings = nn.ModuleList(nn.Embedding(c, embedding_size(c)) for c in cardinalities)
        for embedding in self.embeddings:
            nn.init.normal_(embedding.weight, std=1.0 / math.sqrt(embedding.embedding_dim))
            with torch.no_grad():
                embedding.weight[0].zero_()  # the unknown category
        numeric_width = self.periodic.out_features if self.periodic is not None else num_numeric
        self.out_features = numeric_width + num_indicators + sum(e.embedding_dim for e in self.embeddings)

    def forward(self, numeric: Tensor, categorical: Tensor) -> Tensor:
        values, indicators = numeric[:, : self.num_numeric], numeric[:, self.num_numeric :]
        parts = [self.periodic(values) if self.periodic is not None else values, indicators]
        parts += [embedding(categorical[:, j]) for j, embedding in enumerate(self.embeddings)]
        return torch.cat(parts, dim=1)


class MLP(nn.Sequential):
    """``[Linear -> norm -> ReLU -> Dropout] x num_layers``."""

    def __init__(self, in_features: int, hidden: int, num_layers: int, dropout: float, norm: str) -> None:
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers += [nn.Linear(in_features if i == 0 else hidden, hidden), norm_layer(norm, hidden), nn.ReLU(),
                       nn.Dropout(dropout)]  # fmt: skip
        super().__init__(*layers)
        self.out_features = hidden if num_layers else in_features


class ResidualBlock(nn.Module):
    """``x + Dropout(Linear(Dropout(ReLU(Linear(norm(x))))))`` (Gorishniy et al. 2021)."""

    def __init__(self, width: int, multiplier: float, dropout: float, norm: str) -> None:
        super().__init__()
        inner = max(1, int(width * multiplier))
        self.body = nn.Sequential(norm_layer(norm, width), nn.Linear(width, inner), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(inner, width), nn.Dropout(dropout))  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResNet(nn.Module):
    """``Linear -> residual blocks -> norm -> ReLU``."""

    def __init__(
        self, in_features: int, hidden: int, num_layers: int, dropout: float, norm: str, multiplier: float = 2.0
    ) -> None:
        super().__init__()
        self.stem = nn.Linear(in_features, hidden)
        self.blocks = nn.Sequential(*(ResidualBlock(hidden, multiplier, dropout, norm) for _ in range(num_layers)))
        self.out = nn.Sequential(norm_layer(norm, hidden), nn.ReLU())
        self.out_features = hidden

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.blocks(self.stem(x)))


class TabularNet(nn.Module):
    """Feature encoder, backbone and a linear head of ``outputs`` units (one unit: output ``(N,)``)."""

    def __init__(self, encoder: FeatureEncoder, backbone: nn.Module, outputs: int) -> None:
        super().__init__()
        self.encoder, self.backbone = encoder, backbone
        self.head = nn.Linear(backbone.out_features, outputs)
        self.outputs = outputs

    def forward(self, numeric: Tensor, categorical: Tensor) -> Tensor:
        out = self.head(self.backbone(self.encoder(numeric, categorical)))
        return out.squeeze(-1) if self.outputs == 1 else out


def build_network(
    schema: dict,
    outputs: int,
    arch: str = "mlp",
    hidden_size: int = 256,
    num_layers: int = 2,
    dropout: float = 0.1,
    norm: str = "batch",
    resnet_multiplier: float = 2.0,
    numeric_embedding: str = "none",
    periodic_frequencies: int = 16,
    periodic_sigma: float = 1.0,
    periodic_dim: int = 16,
) -> TabularNet:
    """The network for a data ``schema`` (:meth:`tasks.tabular.data.Preprocessor.schema`)."""
    encoder = FeatureEncoder(
        schema["num_numeric"], schema["num_indicators"], schema["cardinalities"], numeric_embedding,
        periodic_frequencies, periodic_sigma, periodic_dim,
    )  # fmt: skip
    if arch == "mlp":
        backbone: nn.Module = MLP(encoder.out_features, hidden_size, num_layers, dropout, norm)
    else:
        backbone = ResNet(encoder.out_features, hidden_size, num_layers, dropout, norm, resnet_multiplier)
    return TabularNet(encoder, backbone, outputs)
