"""Cross-service-attention + temporal-transformer autoencoder.

Shapes: input ``x`` is ``[B, W, S, F]`` (batch, window steps, services, features) with calendar
context ``[B, W, C]``; the output has the shape of ``x``.

Design choices, and why:

* **Weights are shared across services.** Each (step, service) cell is one token of width
  ``d_model``; a learned service embedding tells the tokens apart. Attention across services at
  each step and across time for each service reuse the same layers for every service, so the
  parameter count grows with ``S`` only through the ``S × d_model`` embedding table. (Flattening all
  services into one ``64·S``-wide vector grows with ``S²`` and is unusable at 50 services.)
* **It cannot learn the identity map.** After encoding, each service's sequence is average-pooled
  in time by ``temporal_pool`` and squeezed through a ``latent_dim`` bottleneck before the decoder
  expands it again, and training adds Gaussian noise to the inputs (denoising). A one-step spike or
  an unusual combination of metrics therefore reconstructs badly, which is what makes it a score.
"""

from __future__ import annotations

import torch
from torch import nn


class _AxisAttention(nn.Module):
    """A transformer encoder layer applied along one axis (time or services) of a 5-D token grid."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(
            d_model,
            n_heads,
            dim_feedforward=2 * d_model,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )

    def forward(self, tokens: torch.Tensor, axis: int) -> torch.Tensor:
        """``tokens``: ``[B, W, S, D]``; attends along ``axis`` (1 = time, 2 = services)."""
        batch, steps, services, width = tokens.shape
        if axis == 2:
            flat = tokens.reshape(batch * steps, services, width)
            return self.layer(flat).reshape(batch, steps, services, width)
        flat = tokens.transpose(1, 2).reshape(batch * services, steps, width)
        return self.layer(flat).reshape(batch, services, steps, width).transpose(1, 2)


class ServiceTransformerAutoencoder(nn.Module):
    """Reconstructs windows of all services jointly; see the module docstring for the design."""

    def __init__(
        self,
        n_services: int,
        n_features: int,
        n_context: int,
        window_size: int,
        *,
        d_model: int = 32,
        n_heads: int = 4,
        n_layers: int = 2,
        latent_dim: int = 8,
        temporal_pool: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if window_size % temporal_pool:
            raise ValueError(
                f"window_size ({window_size}) must be a multiple of temporal_pool ({temporal_pool})"
            )
        self.temporal_pool = temporal_pool
        self.input_projection = nn.Linear(n_features + n_context, d_model)
        self.service_embedding = nn.Embedding(n_services, d_model)
        self.position_embedding = nn.Parameter(torch.zeros(window_size, d_model))
        self.encoder = nn.ModuleList(
            [_AxisAttention(d_model, n_heads, dropout) for _ in range(2 * n_layers)]
        )
        self.to_latent = nn.Linear(d_model, latent_dim)
        self.from_latent = nn.Linear(latent_dim + n_context, d_model)
        self.decoder = nn.ModuleList([_AxisAttention(d_model, n_heads, dropout) for _ in range(2)])
        self.output_projection = nn.Linear(d_model, n_features)
        nn.init.normal_(self.position_embedding, std=0.02)

    def _identity_embeddings(self, steps: int, services: int, device: torch.device) -> torch.Tensor:
        """``[1, W, S, D]`` position + service embeddings added to every token."""
        service_ids = torch.arange(services, device=device)
        return (
            self.position_embedding[:steps, None, :]
            + self.service_embedding(service_ids)[None, :, :]
        )[None]

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Reconstruct ``x`` (``[B, W, S, F]``) given calendar ``context`` (``[B, W, C]``)."""
        batch, steps, services, _ = x.shape
        context_per_service = context[:, :, None, :].expand(
            batch, steps, services, context.shape[-1]
        )
        identity = self._identity_embeddings(steps, services, x.device)
        tokens = self.input_projection(torch.cat([x, context_per_service], dim=-1)) + identity
        for index, layer in enumerate(self.encoder):
            tokens = layer(tokens, axis=2 if index % 2 == 0 else 1)
        latent = self._bottleneck(tokens)
        tokens = self.from_latent(torch.cat([latent, context_per_service], dim=-1)) + identity
        for index, layer in enumerate(self.decoder):
            tokens = layer(tokens, axis=1 if index % 2 == 0 else 2)
        return self.output_projection(tokens)

    def _bottleneck(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pool time by ``temporal_pool``, squeeze to ``latent_dim``, expand back to ``W`` steps."""
        batch, steps, services, width = tokens.shape
        pooled = tokens.reshape(
            batch, steps // self.temporal_pool, self.temporal_pool, services, width
        )
        latent = self.to_latent(pooled.mean(dim=2))
        return latent.repeat_interleave(self.temporal_pool, dim=1)
