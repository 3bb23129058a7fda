"""The project's own detector: the cross-service transformer autoencoder, trained as a denoiser."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ml_monitoring_service.detectors.base import WindowDetector
from ml_monitoring_service.detectors.device import resolve_device
from ml_monitoring_service.detectors.network import ServiceTransformerAutoencoder
from ml_monitoring_service.prepare.time_features import N_TIME_FEATURES
from ml_monitoring_service.prepare.windows import Windows

logger = logging.getLogger(__name__)
_STATE_FILE = "state_dict.pt"
# Attention weights allowed in one scoring chunk (2**26 floats = 256 MiB). Attention across services
# costs S² per time step, so a fixed chunk of windows that is harmless at 6 services needs >10 GiB
# at 200; chunks shrink with S instead. Windows are scored independently, so results do not depend
# on the chunk size.
_SCORING_ATTENTION_BUDGET = 2**26
# Attention weights allowed in one training forward pass on the CPU (2**24). Back-propagation keeps
# every weight with its dropout mask and softmax gradient, about 36 bytes each (measured at S = 200:
# a batch of 64 windows peaked at 13.8 GiB), so a batch is cut into micro-batches under this budget
# (~600 MiB) whose gradients add up to the batch's; smaller passes also ran faster on the CPU. Up to
# 32 services (window 32, 4 heads, batch 64) a batch is one pass. On a GPU, where many small
# passes cost launch overhead instead, the budget is a quarter of the free GPU memory.
_TRAINING_ATTENTION_BUDGET = 2**24
_TRAINING_BYTES_PER_ATTENTION_WEIGHT = 36
# Share of a window (its last steps) that the "recent" error component looks at: a window's score
# is assigned to its end step, and averaging over all W steps dilutes an onset in the last few.
_RECENT_FRACTION = 0.125


class TransformerAutoencoderDetector(WindowDetector):
    """Reconstruction error of :class:`ServiceTransformerAutoencoder` as the anomaly score.

    Training minimises the mean squared error of reconstructing clean windows from noisy ones,
    with early stopping on validation loss; the weights of the best epoch are restored. An
    "epoch" is a random draw of at most ``windows_per_epoch`` training windows, so the cost of an
    epoch does not grow with the lookback (long event-approach histories have ~10⁵ windows).
    ``epoch_losses_`` keeps ``(train, val)`` per epoch for tracking.

    Each channel is scored by three error components, calibrated one by one and averaged with
    weights 3 : 1 : 2:

    * the reconstruction error over the whole window;
    * the same over the window's most recent eighth, so an onset in the last few steps (where the
      window ends, and where its score is placed in time) is not diluted by the normal steps
      before it. The whole window keeps the larger weight because an anomaly that has just left
      the recent eighth still belongs to the window;
    * the channel's squared deviation from the training level (``deviation_weight``, added by
      the base class). An autoencoder that has learned how metrics move together reconstructs a
      shift that keeps those relations (every metric of a service rising together) too well;
      the deviation still sees it. The reconstruction errors keep two thirds of the weight, so
      broken relations between metrics that stay within their normal ranges still decide most
      scores.

    docs/BENCHMARKS.md §2–§4 measure the mix against the detectors it borrows from.
    """

    kind = "transformer_autoencoder"
    component_weights = (3.0, 1.0)
    deviation_weight = 2.0

    def __init__(
        self,
        *,
        d_model: int = 32,
        n_heads: int = 4,
        n_layers: int = 1,
        latent_dim: int = 8,
        temporal_pool: int = 4,
        dropout: float = 0.1,
        input_noise: float = 0.1,
        max_epochs: int = 30,
        windows_per_epoch: int = 1024,
        patience: int = 5,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        device: str = "auto",
        seed: int = 0,
        show_progress: bool = True,
        **window_params: Any,
    ) -> None:
        super().__init__(**window_params)
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.latent_dim = latent_dim
        self.temporal_pool = temporal_pool
        self.dropout = dropout
        self.input_noise = input_noise
        self.max_epochs = max_epochs
        self.windows_per_epoch = windows_per_epoch
        self.patience = patience
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.device = device
        self.seed = seed
        self.show_progress = show_progress

    # --------------------------------------------------------------------------------- training

    def _build_network(self, n_services: int, n_features: int) -> ServiceTransformerAutoencoder:
        return ServiceTransformerAutoencoder(
            n_services,
            n_features,
            N_TIME_FEATURES,
            self.window_size,
            d_model=self.d_model,
            n_heads=self.n_heads,
            n_layers=self.n_layers,
            latent_dim=self.latent_dim,
            temporal_pool=self.temporal_pool,
            dropout=self.dropout,
        )

    def _fit_windows(self, train: Windows, val: Windows) -> None:
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        self.device_ = resolve_device(self.device)
        _, _, n_services, n_features = train.values.shape
        self.network_ = self._build_network(n_services, n_features).to(self.device_)
        optimiser = torch.optim.AdamW(self.network_.parameters(), lr=self.learning_rate)
        train_x, train_c = _as_tensors(train)
        monitor = _subsample(val, self.windows_per_epoch // 2, generator)
        best_loss, best_state, stale = float("inf"), None, 0
        self.epoch_losses_: list[tuple[float, float]] = []
        progress = tqdm(
            range(self.max_epochs), desc="training", unit="epoch", disable=not self.show_progress
        )
        for _ in progress:
            train_loss = self._train_epoch(train_x, train_c, optimiser, generator)
            val_loss = float(self._reconstruction_errors(monitor).mean())
            self.epoch_losses_.append((train_loss, val_loss))
            progress.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
            if val_loss < best_loss - 1e-6:
                best_loss, best_state, stale = (
                    val_loss,
                    copy.deepcopy(self.network_.state_dict()),
                    0,
                )
            else:
                stale += 1
                if stale >= self.patience:
                    logger.info("early stopping after %d epochs", len(self.epoch_losses_))
                    break
        if best_state is not None:
            self.network_.load_state_dict(best_state)
        self.best_epoch_ = int(np.argmin([v for _, v in self.epoch_losses_])) + 1

    def _train_epoch(
        self,
        values: torch.Tensor,
        context: torch.Tensor,
        optimiser: torch.optim.Optimizer,
        generator: torch.Generator,
    ) -> float:
        """One pass over a random draw of windows; the mean training loss per window.

        Each batch's loss is the mean squared error over the whole batch, accumulated over
        micro-batches (see ``_TRAINING_ATTENTION_BUDGET``) before one optimiser step.
        """
        self.network_.train()
        order = torch.randperm(len(values), generator=generator)[: self.windows_per_epoch]
        _, window, services, _ = values.shape
        micro = self._windows_per_pass(
            window, services, self._training_attention_budget(), cap=self.batch_size
        )
        total, count = 0.0, 0
        for batch in order.split(self.batch_size):
            clean = values[batch].to(self.device_)
            noisy = clean + self.input_noise * torch.randn(clean.shape, generator=generator).to(
                self.device_
            )
            batch_context = context[batch].to(self.device_)
            optimiser.zero_grad()
            batch_loss = 0.0
            for start in range(0, len(batch), micro):
                part = slice(start, start + micro)  # a view: no copy of the batch per pass
                reconstruction = self.network_(noisy[part], batch_context[part])
                loss = torch.sum((reconstruction - clean[part]) ** 2) / clean.numel()
                loss.backward()
                batch_loss += float(loss.detach())
            torch.nn.utils.clip_grad_norm_(self.network_.parameters(), 1.0)
            optimiser.step()
            total += batch_loss * len(batch)
            count += len(batch)
        return total / max(count, 1)

    def _training_attention_budget(self) -> int:
        """Attention weights one training pass may hold (see ``_TRAINING_ATTENTION_BUDGET``)."""
        if self.device_.type != "cuda":
            return _TRAINING_ATTENTION_BUDGET
        free_bytes, _ = torch.cuda.mem_get_info(self.device_)
        gpu_budget = free_bytes // 4 // _TRAINING_BYTES_PER_ATTENTION_WEIGHT
        return max(_TRAINING_ATTENTION_BUDGET, gpu_budget)

    def _windows_per_pass(self, window: int, services: int, budget: int, cap: int) -> int:
        """Windows per forward pass (at most ``cap``) that keep the attention weights under
        ``budget``. Per window: service attention (W · S²) and temporal attention (S · W²), for
        every head."""
        per_window = self.n_heads * (window * services**2 + services * window**2)
        return max(1, min(cap, budget // per_window))

    # ---------------------------------------------------------------------------------- scoring

    @torch.no_grad()
    def _reconstruction_errors(self, windows: Windows) -> np.ndarray:
        """``[N, W, S, F]`` squared errors of the deterministic (eval-mode) reconstruction."""
        self.network_.eval()
        values, context = _as_tensors(windows)
        _, window, services, _ = values.shape
        chunk = self._windows_per_pass(
            window, services, _SCORING_ATTENTION_BUDGET, cap=4 * self.batch_size
        )
        chunks = []
        for start in range(0, len(values), chunk):
            x = values[start : start + chunk].to(self.device_)
            c = context[start : start + chunk].to(self.device_)
            chunks.append(((self.network_(x, c) - x) ** 2).cpu().numpy())
        return np.concatenate(chunks, axis=0)

    def _channel_errors(self, windows: Windows) -> np.ndarray:
        """``[2, N, S, F]``: reconstruction error over the whole window and its recent eighth.

        The base class calibrates each component per channel on validation data before
        averaging them with ``component_weights`` (and the deviation component).
        """
        errors = self._reconstruction_errors(windows)
        recent = max(1, round(_RECENT_FRACTION * errors.shape[1]))
        return np.stack([errors.mean(axis=1), errors[:, -recent:].mean(axis=1)]).astype(np.float64)

    # ------------------------------------------------------------------------------ persistence

    def _save_state(self, directory: Path) -> None:
        torch.save(self.network_.state_dict(), directory / _STATE_FILE)

    def _load_state(self, directory: Path) -> None:
        self.device_ = resolve_device(self.device)
        self.network_ = self._build_network(len(self.services_), len(self.features_))
        state = torch.load(directory / _STATE_FILE, map_location=self.device_, weights_only=True)
        self.network_.load_state_dict(state)
        self.network_.to(self.device_)

    def parameter_count(self) -> int:
        """Trainable parameters of the fitted network."""
        return sum(p.numel() for p in self.network_.parameters() if p.requires_grad)


def _subsample(windows: Windows, limit: int, generator: torch.Generator) -> Windows:
    """At most ``limit`` windows, drawn once, so early stopping compares epochs on the same data."""
    if len(windows) <= limit:
        return windows
    keep = np.sort(torch.randperm(len(windows), generator=generator)[:limit].numpy())
    return Windows(
        windows.values[keep], windows.context[keep], windows.starts[keep], windows.ends[keep]
    )


def _as_tensors(windows: Windows) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(windows.values), torch.from_numpy(windows.context)
