"""The bundled experiment families: config class, data loader, trainable.

A study names a family (``family: mdn_motion``) or its own trainable
(``trainable: my_pkg.my_module:train_fn``). This registry is data; adding a
family is one entry here plus its files under core/ and trainables/. Modules
are imported only when a family is used, so one family's heavy imports never
slow another's study.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    experiment_module: str   # core.experiments.<family>: <Config> class, load_data(), build()
    config_class: str        # name of the family's config dataclass in that module
    trainable: str           # "module:function" of the Ray Tune trainable
    data_schema_doc: str     # where the HDF5 schema is documented

    @property
    def module(self) -> Any:
        return importlib.import_module(self.experiment_module)

    @property
    def config_cls(self) -> type:
        return getattr(self.module, self.config_class)

    def load_data(self, config: Any, *, data_path: str | None, cache_dir: Any) -> dict[str, Any]:
        return self.module.load_data(config, data_path=data_path, cache_dir=cache_dir)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("mdn_motion", "emotion-conditioned body-keypoint generation (transformer + MDN head)",
               "core.experiments.mdn_motion", "MdnMotionConfig", "trainables.mdn_motion:train_mdn_motion",
               "core/data/motion.py"),
        Family("cvae_video", "pose-conditioned next-frame video prediction (CVAE, KL annealing, teacher forcing)",
               "core.experiments.cvae_video", "CvaeVideoConfig", "trainables.cvae_video:train_cvae_video",
               "core/data/video.py"),
        Family("hand_pose", "depth image -> 21 3D hand joints (DeepPrior-style PCA regression, FiLM)",
               "core.experiments.hand_pose", "HandPoseConfig", "trainables.hand_pose:train_hand_pose",
               "core/data/hand.py"),
        Family("hand_action", "hand-joint sequence -> action class (LSTM, packed sequences)",
               "core.experiments.hand_action", "HandActionConfig", "trainables.hand_action:train_hand_action",
               "core/data/hand.py"),
        Family("au2blend", "facial action units -> ARKit blendshapes per frame (GRU variants)",
               "core.experiments.au2blend", "Au2BlendConfig", "trainables.au2blend:train_au2blend",
               "core/data/au2blend.py"),
    )
}
