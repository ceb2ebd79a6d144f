"""The bundled experiment families: config class, data loader, trainable.

A study names a family (``family: mdn_motion``) or its own trainable
(``trainable: my_pkg.my_module:train_fn``). This registry is data; adding a
family is one entry here plus its files under core/ and trainables/.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from core.experiments import mdn_motion


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    config_cls: type
    load_data: Callable[..., dict[str, Any]]  # (config, *, data_path, cache_dir) -> arrays
    trainable: str                            # "module:function"
    data_schema_doc: str                      # where the HDF5 schema is documented


FAMILIES: dict[str, Family] = {
    "mdn_motion": Family(
        name="mdn_motion",
        description="emotion-conditioned body-keypoint generation (transformer + MDN head)",
        config_cls=mdn_motion.MdnMotionConfig,
        load_data=mdn_motion.load_data,
        trainable="trainables.mdn_motion:train_mdn_motion",
        data_schema_doc="core/data/motion.py",
    ),
}
