"""The ``mdn_sampling`` family: how to sample from one trained MDN motion model.

Sampling is a generation-time choice, so nothing is trained per trial. One MDN
motion model (the ``mdn_motion`` recipe) and one emotion probe
(core/emotion_probe.py) are fitted once, before the trials, by
:func:`shared_arrays` (``FamilyDef.shared``), and reach every trial with the
data. A trial's "epoch" generates continuations of a new batch of validation
contexts and reports running means over the epochs so far of

- ``gen_jerk_ratio``: jerk of the generated motion / jerk of the real
  continuation of the same contexts (lower: smoother);
- ``gen_diversity``: mean distance between ``gen_samples`` continuations of one
  context (higher: more varied motion);
- ``emotion_consistency``: the probe's probability of the conditioning emotion
  on the generated motion (higher: the emotion survives),

so a longer budget buys a more precise estimate, which is what ASHA trades.
The research notes: "most probable" is smoothest but static, "random" moves
most but is noisy and loses the emotion, "next most probable" with sigma
divided by a cosine factor 100 -> 1 was their trade-off.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from core.config import AT_LEAST_ONE, DROPOUT, NON_NEGATIVE, OPEN_FRACTION, POSITIVE, Bound, ConfigError, check_bounds
from core.data.motion import NUM_EMOTIONS, NUM_JOINTS
from core.emotion_probe import EmotionProbe, emotion_consistency, sequence_windows
from core.experiments.base import EVAL_SEED_STRIDE, epoch_seed, random_split, shared_tensor
from core.experiments.mdn_motion import FAMILY as MDN_MOTION
from core.experiments.mdn_motion import MdnMotionConfig, MdnMotionExperiment, continue_motion
from core.experiments.registry import FamilyDef
from core.metrics import mean_jerk, sample_diversity
from core.models.mdn import SAMPLING_MODES
from core.models.motion_transformer import MotionTransformer, MotionTransformerConfig
from core.schedules import SIGMA_SHAPES, sigma_divisor
from core.training import check_finite

MODEL_PREFIX, PROBE_PREFIX, PRETRAIN_PREFIX = "shared/model/", "shared/probe/", "shared/pretrain/"
_MODEL_FIELDS = ("d_model", "n_heads", "n_layers", "dim_feedforward", "dropout", "n_components")
# (running name, per-epoch name) of each figure an epoch measures, in the order they are stored
_FIGURES = (("gen_jerk_ratio", "epoch_gen_jerk_ratio"), ("gen_diversity", "epoch_gen_diversity"),
            ("emotion_consistency", "epoch_emotion_consistency"),
            ("real_emotion_consistency", "epoch_real_emotion_consistency"))
# the pretrained model's validation figures, shared with every trial and reported as pretrain_<name>
_PRETRAIN_METRICS = ("val_kp_mse", "val_emotion_mse", "val_nll")


@dataclass
class MdnSamplingConfig:
    # data (synthetic generator; ignored by a user's --data file except the split)
    num_sequences: int = 384
    min_length: int = 32
    max_length: int = 64
    data_seed: int = 0
    val_fraction: float = 0.2
    # the shared model: trained once, before the trials (fields as in MdnMotionConfig)
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    dim_feedforward: int = 128
    dropout: float = 0.1
    n_components: int = 5
    pretrain_epochs: int = 60     # 12 left generations with no emotion for any mode (probe: chance)
    pretrain_lr: float = 1e-3
    pretrain_batch_size: int = 16
    pretrain_seed: int = 0       # the shared model's and probe's seed; `seed` is the trial's
    probe_window: int = 16       # frames the emotion probe sees at a time
    # generation: what a trial chooses
    sampling: str = "next_most_probable"
    sigma_schedule: str = "cosine"
    sigma_start: float = 100.0   # sigma divisor at the first generated frame
    sigma_end: float = 1.0       # ... and at the last (unused by `constant`)
    gen_context: int = 16        # real frames the model continues
    gen_steps: int = 24          # frames generated
    gen_samples: int = 4         # continuations per context (diversity)
    contexts_per_epoch: int = 16 # new validation contexts per epoch
    seed: int = 0                # contexts and sampling noise
    max_epochs: int = 9

    # Every numeric field's range, checked when a config is built (core.config.check_bounds).
    BOUNDS: ClassVar[dict[str, Bound]] = {
        "num_sequences": Bound(2), "min_length": Bound(3), "max_length": Bound(3), "data_seed": NON_NEGATIVE,
        "val_fraction": OPEN_FRACTION, "d_model": AT_LEAST_ONE, "n_heads": AT_LEAST_ONE, "n_layers": AT_LEAST_ONE,
        "dim_feedforward": AT_LEAST_ONE, "dropout": DROPOUT, "n_components": AT_LEAST_ONE,
        "pretrain_epochs": AT_LEAST_ONE, "pretrain_lr": POSITIVE, "pretrain_batch_size": AT_LEAST_ONE,
        "pretrain_seed": NON_NEGATIVE, "probe_window": Bound(3), "sigma_start": POSITIVE, "sigma_end": POSITIVE,
        "gen_context": AT_LEAST_ONE, "gen_steps": Bound(4), "gen_samples": Bound(2),
        "contexts_per_epoch": AT_LEAST_ONE, "seed": NON_NEGATIVE, "max_epochs": AT_LEAST_ONE,
    }

    def __post_init__(self) -> None:
        check_bounds(self, self.BOUNDS)   # gen_samples >= 2: diversity compares continuations
        if self.sampling not in SAMPLING_MODES:
            raise ConfigError(f"`sampling` is {self.sampling!r}, expected one of {list(SAMPLING_MODES)}")
        if self.sigma_schedule not in SIGMA_SHAPES:
            raise ConfigError(f"`sigma_schedule` is {self.sigma_schedule!r}, expected one of {list(SIGMA_SHAPES)}")
        if self.min_length > self.max_length:
            raise ConfigError(f"`min_length` is {self.min_length}, expected 3 <= min_length <= max_length ({self.max_length})")
        if self.d_model % self.n_heads:
            raise ConfigError(f"`d_model` ({self.d_model}) must be divisible by `n_heads` ({self.n_heads})")
        if self.gen_steps < self.probe_window:
            raise ConfigError(f"`gen_steps` ({self.gen_steps}) must be >= `probe_window` ({self.probe_window}): "
                              "the probe scores windows of generated frames")


SHARED_FIELDS = frozenset(MDN_MOTION.data_fields | {"val_fraction", *_MODEL_FIELDS, "pretrain_epochs", "pretrain_lr",
                                                    "pretrain_batch_size", "pretrain_seed", "probe_window"})


def _pretrain_config(c: MdnSamplingConfig) -> MdnMotionConfig:
    """The mdn_motion config that trains the shared model (its default MDN-weight
    ramp: 0.1 -> 1 over the first half); generation is not used, so it is minimal."""
    return MdnMotionConfig(
        num_sequences=c.num_sequences, min_length=c.min_length, max_length=c.max_length, data_seed=c.data_seed,
        val_fraction=c.val_fraction, **{f: getattr(c, f) for f in _MODEL_FIELDS}, lr=c.pretrain_lr,
        batch_size=c.pretrain_batch_size, seed=c.pretrain_seed, max_epochs=c.pretrain_epochs,
        gen_context=1, gen_steps=1, gen_samples=1, gen_contexts=1,
    )


def shared_arrays(config: MdnSamplingConfig, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Train the shared MDN model and fit the emotion probe, once, on the CPU.

    The model: ``pretrain_epochs`` of :class:`MdnMotionExperiment` on the training
    split. The probe: windows of ``probe_window`` frames (every half window) of
    the training split's real motion; a quarter of those sequences held out for
    its accuracy. Returns flat numpy arrays under ``shared/model/<parameter>``,
    ``shared/probe/<name>`` and ``shared/pretrain/<validation metric>``; the same
    config and data give the same arrays, and torch's global random state is left
    as it was. Depends on :data:`SHARED_FIELDS` of the config only.
    """
    c = config
    with torch.random.fork_rng(devices=[]):
        pre = MdnMotionExperiment(_pretrain_config(c), arrays, "cpu")
        for epoch in range(c.pretrain_epochs):
            check_finite(pre.train_epoch(epoch), epoch + 1)
        val = pre.evaluate(c.pretrain_epochs - 1)
    n, T = arrays["keypoints"].shape[:2]
    keypoints = pre.keypoints.reshape(n, T, NUM_JOINTS, 2)
    windows, owner = sequence_windows(keypoints, pre.lengths, pre.train_idx, c.probe_window, max(1, c.probe_window // 2))
    labels = shared_tensor(arrays["label"], "cpu", torch.long)
    probe = EmotionProbe.fit(windows, labels[owner], c.pretrain_seed, groups=owner)
    out = {MODEL_PREFIX + k: v.detach().cpu().numpy().copy() for k, v in pre.model.state_dict().items()}
    out.update({PROBE_PREFIX + k: v.copy() for k, v in probe.state_dict().items()})
    out.update({PRETRAIN_PREFIX + k: np.asarray(val[k], dtype=np.float64) for k in _PRETRAIN_METRICS})
    return out


def _strip(arrays: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


class MdnSamplingExperiment:
    """Generation only: the shared model and probe come in ``arrays`` (see
    :func:`shared_arrays`); the state is the per-epoch figures measured so far."""

    def __init__(self, config: MdnSamplingConfig, arrays: dict[str, np.ndarray], device: torch.device | str = "cpu"):
        self.config = c = config
        self.device = torch.device(device)
        n, T = arrays["keypoints"].shape[:2]
        need = c.gen_context + c.gen_steps
        if need > T:
            raise ConfigError(f"`gen_context` + `gen_steps` = {need} exceeds the data's {T} frames")
        weights, probe = _strip(arrays, MODEL_PREFIX), _strip(arrays, PROBE_PREFIX)
        if not weights or not probe:
            raise ConfigError(f"the data has no {MODEL_PREFIX}* / {PROBE_PREFIX}* arrays: compute them once with "
                              "the family's `shared(config, arrays)` and add them to the data")
        self.keypoints = shared_tensor(arrays["keypoints"].reshape(n, T, NUM_JOINTS * 2), self.device)
        self.emotion = shared_tensor(arrays["emotion"], self.device)
        self.lengths = shared_tensor(arrays["lengths"], self.device, torch.long)
        self.labels = shared_tensor(arrays["label"], self.device, torch.long)
        _, val_idx = random_split(n, c.val_fraction, c.data_seed, device=self.device)
        eligible = val_idx[self.lengths[val_idx] >= need]
        if len(eligible) == 0:
            raise ConfigError(f"no validation sequence has `gen_context` + `gen_steps` = {need} frames")
        cycle = torch.randperm(len(eligible), generator=torch.Generator().manual_seed(c.seed))
        self.cycle = eligible[cycle.to(self.device)]          # the order the epochs take contexts in
        self.model = MotionTransformer(MotionTransformerConfig(
            keypoint_dim=NUM_JOINTS * 2, emotion_dim=NUM_EMOTIONS, max_length=T,
            **{f: getattr(c, f) for f in _MODEL_FIELDS})).to(self.device)
        self.model.load_state_dict({k: shared_tensor(v, self.device) for k, v in weights.items()})
        self.model.eval().requires_grad_(False)
        self.probe = EmotionProbe.from_state(probe)
        self.pretrain = {f"pretrain_{k}": float(np.asarray(v)) for k, v in _strip(arrays, PRETRAIN_PREFIX).items()}
        self.measured: dict[int, tuple[float, ...]] = {}      # epoch -> its figures, in _FIGURES order

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """Nothing to train: the model was trained once, before the trials."""
        return {}

    def contexts(self, epoch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Epoch ``epoch``'s validation sequences (the next ``contexts_per_epoch`` of
        the seeded cycle, wrapping around) and a random start frame in each."""
        c = self.config
        positions = (epoch * c.contexts_per_epoch + torch.arange(c.contexts_per_epoch, device=self.device)) % len(self.cycle)
        idx = self.cycle[positions]
        room = self.lengths[idx] - (c.gen_context + c.gen_steps) + 1          # valid start frames
        start = (torch.rand(len(idx), generator=generator, device=self.device) * room).long().clamp_max(room - 1)
        return idx, start

    @torch.no_grad()
    def measure(self, epoch: int) -> tuple[float, ...]:
        """The figures of one epoch's contexts (see the module docstring)."""
        c = self.config
        gen = torch.Generator(device=self.device).manual_seed(epoch_seed(c.seed, epoch, stride=EVAL_SEED_STRIDE))
        idx, start = self.contexts(epoch, gen)
        frames = start[:, None] + torch.arange(c.gen_context + c.gen_steps, device=self.device)   # (B, ctx+steps)
        kp, emo = self.keypoints[idx[:, None], frames], self.emotion[idx[:, None], frames]       # (B, ., 34), (B, ., 4)
        S, B = c.gen_samples, len(idx)
        out = continue_motion(
            self.model, kp[:, : c.gen_context].repeat(S, 1, 1), emo[:, : c.gen_context].repeat(S, 1, 1), c.gen_steps,
            mode=c.sampling, generator=gen,
            divisor=lambda step: sigma_divisor(step, c.gen_steps, start=c.sigma_start, end=c.sigma_end, shape=c.sigma_schedule))
        samples = out.float().reshape(S, B, c.gen_steps, NUM_JOINTS, 2)
        real = kp[:, c.gen_context :].reshape(B, c.gen_steps, NUM_JOINTS, 2)
        labels = self.labels[idx]
        return (mean_jerk(samples.flatten(0, 1)) / max(mean_jerk(real), 1e-12),
                sample_diversity(samples),
                emotion_consistency(self.probe, samples.flatten(0, 1), labels.repeat(S)),
                emotion_consistency(self.probe, real, labels))

    def evaluate(self, epoch: int) -> dict[str, float]:
        """Measure epoch ``epoch`` (again: it replaces, never double counts) and
        report the running means over every epoch measured, this epoch's own
        figures, and the shared model's and probe's quality (constant)."""
        self.measured[epoch] = self.measure(epoch)
        values = list(self.measured.values())
        out: dict[str, float] = {}
        for i, (running, own) in enumerate(_FIGURES):
            out[running] = math.fsum(v[i] for v in values) / len(values)
            out[own] = self.measured[epoch][i]
        out["contexts_measured"] = len(values) * self.config.contexts_per_epoch
        out["probe_accuracy"] = self.probe.held_out_accuracy
        out.update(self.pretrain)
        return out

    def state_dict(self) -> dict[str, Any]:
        """The measured figures (a resumed trial continues its means), with the model
        and config so the checkpoint describes itself; no optimizer: nothing trains."""
        epochs = sorted(self.measured)
        return {"model": self.model.state_dict(), "optimizer": {}, "model_args": self.model.constructor_args(),
                "config": asdict(self.config), "measured_epochs": epochs,
                "measured": [list(self.measured[e]) for e in epochs]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.measured = {int(e): tuple(float(x) for x in v) for e, v in zip(state["measured_epochs"], state["measured"])}


def reported_metrics(config: MdnSamplingConfig) -> list[str]:
    """What a trial reports (``FamilyDef.metrics``): nothing from ``train_epoch``;
    from ``evaluate`` each figure's running mean and this epoch's value, the contexts
    measured, and the shared probe's and pretrained model's quality."""
    return ["epoch", *(name for pair in _FIGURES for name in pair), "contexts_measured", "probe_accuracy",
            *(f"pretrain_{k}" for k in _PRETRAIN_METRICS)]


FAMILY = FamilyDef(
    name="mdn_sampling",
    config_cls=MdnSamplingConfig,
    experiment_cls=MdnSamplingExperiment,
    data=MDN_MOTION.data,
    study="mdn_sampling",
    tiny={"num_sequences": 16, "min_length": 16, "max_length": 24, "d_model": 16, "n_heads": 2, "dim_feedforward": 16,
          "n_layers": 1, "pretrain_epochs": 1, "pretrain_batch_size": 8, "probe_window": 8, "gen_context": 8,
          "gen_steps": 8, "gen_samples": 2, "contexts_per_epoch": 2, "max_epochs": 2},
    shared=shared_arrays,
    shared_fields=SHARED_FIELDS,
    metrics=reported_metrics,
)
