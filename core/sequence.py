"""Variable-length sequence helpers: masks, a length-sorting collate, masked metrics.

Families that keep their sequences as padded arrays ``(N, T, ...)`` plus a
``lengths`` vector (the HDF5 layout of every bundled family) batch them with
:func:`collate_sorted`: it gathers a batch, crops it to its longest member and
sorts it longest first, which is what
``torch.nn.utils.rnn.pack_padded_sequence(..., enforce_sorted=True)`` needs.
Losses and metrics then count real frames only, through the batch's mask.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from core.metrics import masked_mean  # one masked mean for every family; re-exported here


def length_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """(B, T) bool mask, True at the first ``lengths[b]`` frames of row b."""
    T = int(lengths.max()) if max_length is None else max_length
    return torch.arange(T, device=lengths.device)[None] < lengths[:, None]      # (B, T)


@dataclass
class SequenceBatch:
    """One padded batch, longest sequence first.

    ``tensors[name]`` is (B, L, ...) with L the batch's longest (cropped) length;
    ``lengths`` lives on the CPU as int64, as ``pack_padded_sequence`` wants it;
    ``mask`` (B, L) is on the data's device.
    """

    index: torch.Tensor                      # (B,) rows of the source arrays
    lengths: torch.Tensor                    # (B,) int64, CPU, non-increasing
    mask: torch.Tensor                       # (B, L) bool
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


def collate_sorted(
    arrays: Mapping[str, torch.Tensor],
    lengths: torch.Tensor,
    idx: torch.Tensor,
    *,
    starts: torch.Tensor | None = None,
    max_length: int | None = None,
) -> SequenceBatch:
    """Gather rows ``idx`` of padded (N, T, ...) ``arrays``, sorted longest first.

    With ``starts`` (one start frame per entry of ``idx``) and ``max_length``,
    row b is the window ``[starts[b], starts[b] + min(lengths - starts, max_length))``
    (a crop of a long sequence); without them, the whole sequence. The result
    is padded to the longest window only, never to the arrays' full T.
    """
    device = idx.device
    first = torch.zeros_like(idx) if starts is None else starts.to(device=device, dtype=torch.long)
    n = lengths[idx.cpu()].to(device) - first                                  # (B,)
    if max_length is not None:
        n = n.clamp(max=max_length)
    order = torch.sort(n.cpu(), descending=True, stable=True).indices.to(device)
    idx, first, n = idx[order], first[order], n[order]
    L = int(n.max())
    T = next(iter(arrays.values())).shape[1]
    frames = (first[:, None] + torch.arange(L, device=device)[None]).clamp(max=T - 1)   # (B, L)
    tensors = {k: v[idx[:, None], frames] for k, v in arrays.items()}           # (B, L, ...)
    mask = torch.arange(L, device=device)[None] < n[:, None]                    # (B, L)
    return SequenceBatch(index=idx, lengths=n.cpu().long(), mask=mask, tensors=tensors)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the real frames (and every channel) of (B, T, C) tensors."""
    return masked_mean((pred - target).pow(2), mask)


class MaskedRegressionStats:
    """Running sums for MSE and R^2 over the real frames of many batches.

    R^2 is the coefficient of determination pooled over channels,
    ``1 - sum_c SS_res[c] / sum_c SS_tot[c]``, with ``SS_tot[c]`` taken around
    channel c's mean over all real frames seen (sklearn's ``r2_score`` with
    ``multioutput="variance_weighted"``): channels that barely move (a
    blendshape that is nearly always 0) cannot dominate the figure the way
    they do in a plain average of per-channel R^2. Sums are kept in float64,
    so the result does not depend on how frames are split into batches beyond
    rounding.
    """

    def __init__(self) -> None:
        self.frames = 0
        self.sse: torch.Tensor | None = None        # (C,) sum of squared errors
        self.sum_y: torch.Tensor | None = None      # (C,)
        self.sum_y2: torch.Tensor | None = None     # (C,)

    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        """Add the real frames of (B, T, C) ``pred`` / ``target`` under (B, T) ``mask``."""
        p, y = pred[mask].double(), target[mask].double()                          # (F, C)
        sse, sy, sy2 = (p - y).pow(2).sum(0), y.sum(0), y.pow(2).sum(0)
        if self.sse is None:
            self.sse, self.sum_y, self.sum_y2 = sse, sy, sy2
        else:
            assert self.sum_y is not None and self.sum_y2 is not None   # set together with sse
            self.sse, self.sum_y, self.sum_y2 = self.sse + sse, self.sum_y + sy, self.sum_y2 + sy2
        self.frames += int(p.shape[0])

    def mse(self) -> float:
        if self.sse is None or self.frames == 0:
            return float("nan")
        return float(self.sse.sum() / (self.frames * self.sse.numel()))

    def r2(self) -> float:
        if self.sse is None or self.frames == 0:
            return float("nan")
        assert self.sum_y is not None and self.sum_y2 is not None   # update() sets them together with sse
        ss_tot = (self.sum_y2 - self.sum_y.pow(2) / self.frames).clamp_min(0.0).sum()
        if float(ss_tot) == 0.0:
            return float("nan")  # constant targets: R^2 is undefined
        return float(1.0 - self.sse.sum() / ss_tot)
