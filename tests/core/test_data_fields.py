"""Each family's DATA_FIELDS names exactly the config fields its load_data
builds the data set from (a search over one is refused by the spec check)."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest

from studies.families import FAMILIES


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_data_fields_are_what_load_data_reads(name: str) -> None:
    module = FAMILIES[name].module
    read = set(re.findall(r"\bconfig\.(\w+)", inspect.getsource(module.load_data)))
    assert module.DATA_FIELDS == read
    assert read <= {f.name for f in dataclasses.fields(FAMILIES[name].config_cls)}
