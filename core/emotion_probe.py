"""A small emotion classifier on windows of body keypoints, to score generated motion.

The research notes judge a sampling mode by whether the generated motion keeps
the emotion it was conditioned on. With no human raters, a probe trained once
on real motion stands in for them: hand-made features that carry emotion in
the motion generator (core/data/motion.py: tempo, amplitude, head and shoulder
height, arm spread), standardised, then multinomial logistic regression fitted
by full-batch L-BFGS (convex, zero-initialised: the same data give the same
probe). :func:`emotion_consistency` is the probability the probe gives the
conditioning emotion, averaged: a smooth figure, unlike an argmax accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from core.data.motion import NUM_EMOTIONS, NUM_JOINTS

_LEFT_SHOULDER, _RIGHT_SHOULDER, _LEFT_HIP, _RIGHT_HIP = 5, 6, 11, 12


def window_features(windows: torch.Tensor) -> torch.Tensor:
    """(N, W, 17, 2) keypoints -> (N, 86) float64 features that carry emotion.

    Joints are taken relative to the hip centre and divided by the torso length
    (shoulder centre to hip centre), so a figure's place and size in the image do
    not count; per joint: mean position (posture: head bowed, arms spread), spread
    over the window (amplitude) and the mean and standard deviation of its frame
    to frame speed (tempo x amplitude, jitter); plus the speed of the hip centre
    (body bob and sway), in torso lengths per frame.
    """
    x = windows.detach().to(torch.float64)                                    # (N, W, J, 2)
    hips = x[:, :, [_LEFT_HIP, _RIGHT_HIP]].mean(dim=2)                       # (N, W, 2)
    shoulders = x[:, :, [_LEFT_SHOULDER, _RIGHT_SHOULDER]].mean(dim=2)        # (N, W, 2)
    torso = (shoulders - hips).norm(dim=-1).mean(dim=1).clamp_min(1e-6)      # (N,)
    rel = (x - hips[:, :, None]) / torso[:, None, None, None]                 # (N, W, J, 2)
    speed = rel.diff(dim=1).norm(dim=-1)                                      # (N, W-1, J)
    body = (hips.diff(dim=1).norm(dim=-1) / torso[:, None]).mean(dim=1)       # (N,)
    return torch.cat([
        rel.mean(dim=1).flatten(1),                  # (N, 34) posture
        rel.std(dim=1).norm(dim=-1),                 # (N, 17) amplitude
        speed.mean(dim=1), speed.std(dim=1),         # (N, 17) x 2
        body[:, None],                               # (N, 1)
    ], dim=1)


def sequence_windows(keypoints: torch.Tensor, lengths: torch.Tensor, idx: torch.Tensor, window: int,
                     stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ``window``-frame window (every ``stride`` frames) inside the valid frames
    of sequences ``idx`` of (N, T, 17, 2) ``keypoints``: (M, window, 17, 2) windows
    and the (M,) sequence index each came from."""
    windows, owner = [], []
    for i in idx.tolist():
        for start in range(0, int(lengths[i]) - window + 1, stride):
            windows.append(keypoints[i, start : start + window])
            owner.append(i)
    if not windows:
        raise ValueError(f"The value of `window` is {window}, but no sequence has that many valid frames")
    return torch.stack(windows), torch.as_tensor(owner)


@dataclass
class EmotionProbe:
    """Standardised :func:`window_features` -> softmax(weight @ z + bias) over the emotions."""

    mean: torch.Tensor         # (F,) feature means of the fitting windows, float64
    std: torch.Tensor          # (F,)
    weight: torch.Tensor       # (C, F)
    bias: torch.Tensor         # (C,)
    window: int                # frames per window the probe was fitted on
    held_out_accuracy: float   # argmax accuracy on windows of held-out sequences

    @classmethod
    def fit(cls, windows: torch.Tensor, labels: torch.Tensor, seed: int, *, groups: torch.Tensor | None = None,
            held_out: float = 0.25, l2: float = 0.1, num_classes: int = NUM_EMOTIONS,
            max_iter: int = 200) -> EmotionProbe:
        """Fit on (N, W, 17, 2) ``windows`` with (N,) integer ``labels``.

        A ``held_out`` fraction of the ``groups`` (e.g. the sequence each window
        came from, so overlapping windows of one sequence never sit on both sides;
        each window its own group if None), drawn with ``seed``, is kept out of the
        fit and gives :attr:`held_out_accuracy`; the probe is the one fitted on the
        rest. ``l2`` penalises the weights on standardised features: it keeps the fit
        finite on separable classes (the synthetic emotions are) and the
        probabilities graded, so :func:`emotion_consistency` moves smoothly.
        """
        if windows.dim() != 4 or windows.shape[2:] != (NUM_JOINTS, 2):
            raise ValueError(f"The shape of `windows` is {tuple(windows.shape)}, but must be (N, W, {NUM_JOINTS}, 2)")
        if windows.shape[1] < 3:
            raise ValueError(f"The window length is {windows.shape[1]}, but must be >= 3 (speeds need 2 differences)")
        if not 0.0 < held_out < 1.0:
            raise ValueError(f"The value of `held_out` is {held_out}, but must be 0 < held_out < 1")
        labels = torch.as_tensor(labels).long().cpu()
        groups = torch.arange(len(labels)) if groups is None else torch.as_tensor(groups).cpu()
        unique = torch.unique(groups)
        if len(unique) < 2:
            raise ValueError(f"The windows come from {len(unique)} group(s), but a held-out split needs >= 2")
        with torch.autocast(windows.device.type, enabled=False):   # the fit in float64 whatever the trial's precision
            features = window_features(windows).cpu()
            order = torch.as_tensor(np.random.default_rng(seed).permutation(len(unique)))
            n_out = min(len(unique) - 1, max(1, math.ceil(held_out * len(unique))))
            test = torch.isin(groups, unique[order[:n_out]])
            mean, std = features[~test].mean(dim=0), features[~test].std(dim=0).clamp_min(1e-6)
            weight, bias = _fit_logistic((features[~test] - mean) / std, labels[~test], num_classes, l2, max_iter)
            probe = cls(mean, std, weight, bias, int(windows.shape[1]), 0.0)
            accuracy = (probe._proba_of_features(features[test]).argmax(dim=1) == labels[test]).double().mean()
        probe.held_out_accuracy = float(accuracy)
        return probe

    def _proba_of_features(self, features: torch.Tensor) -> torch.Tensor:
        z = (features - self.mean.to(features.device)) / self.std.to(features.device)          # (N, F)
        return torch.softmax(z @ self.weight.to(features.device).T + self.bias.to(features.device), dim=1)

    def predict_proba(self, windows: torch.Tensor) -> torch.Tensor:
        """(N, W, 17, 2) windows -> (N, C) emotion probabilities (float64)."""
        if windows.shape[1] != self.window:
            raise ValueError(f"The windows have {windows.shape[1]} frames, but the probe was fitted on {self.window}")
        with torch.autocast(windows.device.type, enabled=False):
            return self._proba_of_features(window_features(windows))

    def state_dict(self) -> dict[str, np.ndarray]:
        """Plain numpy arrays (what travels to the trials with the data)."""
        return {"mean": self.mean.numpy(), "std": self.std.numpy(), "weight": self.weight.numpy(),
                "bias": self.bias.numpy(), "window": np.asarray(self.window, dtype=np.int64),
                "held_out_accuracy": np.asarray(self.held_out_accuracy, dtype=np.float64)}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> EmotionProbe:
        def tensor(key: str) -> torch.Tensor:
            array = np.asarray(state[key])
            return torch.tensor(array.astype(array.dtype.newbyteorder("=")), dtype=torch.float64)

        return cls(tensor("mean"), tensor("std"), tensor("weight"), tensor("bias"),
                   int(np.asarray(state["window"])), float(np.asarray(state["held_out_accuracy"])))


def _fit_logistic(z: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float,
                  max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on (N, F) standardised features: mean
    cross-entropy + l2/2 |W|^2, from zero weights, by full-batch L-BFGS."""
    weight = torch.zeros(num_classes, z.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ weight.T + bias, labels) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def emotion_consistency(probe: EmotionProbe, generated: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean probability the probe gives the conditioning emotion ``labels`` (N,) on
    (N, T, 17, 2) motion, over every ``probe.window``-frame window (stride 1) of
    each sequence; T >= probe.window. 1 / 4 is chance for a probe that knows nothing."""
    N, T = generated.shape[:2]
    if T < probe.window:
        raise ValueError(f"The motion has {T} frames, but the probe needs windows of {probe.window}")
    windows = generated.unfold(1, probe.window, 1).permute(0, 1, 4, 2, 3)     # (N, n, W, J, 2)
    n = windows.shape[1]
    proba = probe.predict_proba(windows.flatten(0, 1)).reshape(N, n, -1)       # (N, n, C)
    target = torch.as_tensor(labels, device=proba.device).long()
    return float(proba.gather(2, target[:, None, None].expand(N, n, 1)).mean())
