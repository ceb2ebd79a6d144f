"""The experiment families: one ``FamilyDef`` each, found by name.

A family is three files in ``core/`` (its data in ``core/data/``, its model in
``core/models/``, its experiment in ``core/experiments/``, which ends with a
``FAMILY = FamilyDef(...)``) and one line in :data:`FAMILY_MODULES` below. The
CLI, the data converter, the generic trainable, the benchmarks and the shared
family tests (tests/core/test_family_contract.py) all read it from here.

Modules are imported only when their family is used, so one family's imports
never slow another's study, and this module imports neither torch nor Ray.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import config_from_dict

if TYPE_CHECKING:
    import numpy as np

# name -> the module that defines its FAMILY
FAMILY_MODULES: dict[str, str] = {
    "mdn_motion": "core.experiments.mdn_motion",
    "cvae_video": "core.experiments.cvae_video",
    "hand_pose": "core.experiments.hand_pose",
    "hand_action": "core.experiments.hand_action",
    "au2blend": "core.experiments.au2blend",
    "mdn_sampling": "core.experiments.mdn_sampling",
}


@dataclass(frozen=True)
class DataDef:
    """How a family's data set is made, stored and checked.

    ``params`` maps each keyword of ``generate`` to the config field it comes
    from; those fields are the family's *data fields*. The data set is built
    once, before the trials, so a search over a data field would be silently
    ignored (studies/spec/study.py refuses it).
    """

    schema: Mapping[str, Any]                          # dataset name -> core.data.hdf5.Dataset
    check: Callable[[dict[str, Any], str], None]       # semantic checks beyond the schema, one-line errors
    generate: Callable[..., dict[str, Any]]            # the synthetic set
    cache_name: str                                    # prefix of its file in the cache folder
    params: Mapping[str, str]                          # generate keyword -> config field

    def load(self, config: Any, *, data_path: str | None, cache_dir: str | Path) -> dict[str, Any]:
        """A user's HDF5 file, or the synthetic set from (and into) the cache."""
        from core.data.hdf5 import cached_hdf5, load_hdf5

        if data_path is None:
            params = {kw: getattr(config, name) for kw, name in self.params.items()}
            data_path = str(cached_hdf5(cache_dir, self.cache_name, params, lambda: self.generate(**params), self.schema))
        arrays = load_hdf5(data_path, self.schema)
        self.check(arrays, data_path)
        return arrays


@dataclass(frozen=True)
class FamilyDef:
    name: str
    config_cls: type                   # a dataclass; its fields are the keys of a study's config
    experiment_cls: type               # (config, arrays, device) -> train_epoch / evaluate / state_dict
    data: DataDef
    study: str                         # the bundled study that exercises it
    tiny: Mapping[str, Any] = field(default_factory=dict)  # overrides for a seconds-long config (tests)
    shared: Callable[[Any, dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None
    """What every trial of a study uses but none may change, computed ONCE on the
    driver from the family config and the loaded data set, before any trial; its
    arrays are added to the data dict that reaches every trial through Ray's
    object store. The pattern for an inference-time knob (sampling, decoding,
    thresholds): fit the model once here, and let the trials only use it.
    None (most families): nothing shared beyond the data."""
    shared_fields: frozenset[str] = frozenset()
    """The config fields ``shared``'s result depends on (data fields included):
    the key of its cache, and fields a search must not vary (each trial would
    silently get the one shared result)."""
    metrics: Callable[[Any], Sequence[str]] | None = None
    """The names a trial with this (validated) config may report: the keys of
    ``train_epoch``'s and ``evaluate``'s dicts, ``epoch`` included, every name any
    branch can report (a superset is fine; a missing name would refuse a valid
    spec). studies/spec/study.py refuses a spec's ``metric:`` or ``report:``
    metric outside them, at load, before Ray starts. A module-level function, not a
    lambda; tests/core/test_family_contract.py checks it against a real epoch.
    None: not declared (a typo then fails only when trials report)."""

    @property
    def data_fields(self) -> frozenset[str]:
        return frozenset(self.data.params.values())

    def config(self, values: Mapping[str, Any], *, ignore: frozenset[str] = frozenset()) -> Any:
        return config_from_dict(self.config_cls, values, ignore=ignore)

    def defaults(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config_cls())

    def load_data(self, config: Any, *, data_path: str | None, cache_dir: str | Path) -> dict[str, Any]:
        return self.data.load(config, data_path=data_path, cache_dir=cache_dir)

    def build(self, config: Mapping[str, Any], arrays: dict[str, Any], device: Any = "cpu", *,
              ignore: frozenset[str] = frozenset()) -> Any:
        """The experiment for a trial's config dict (keys in ``ignore`` are the
        platform's, not the family's)."""
        return self.experiment_cls(self.config(config, ignore=ignore), arrays, device)


def family_names() -> list[str]:
    return list(FAMILY_MODULES)


def get_family(name: str) -> FamilyDef:
    """The family ``name`` (a KeyError for an unknown one: callers check
    :func:`family_names` first and say what is known)."""
    family = importlib.import_module(FAMILY_MODULES[name]).FAMILY
    assert isinstance(family, FamilyDef) and family.name == name, f"{FAMILY_MODULES[name]}.FAMILY is not {name!r}"
    return family
