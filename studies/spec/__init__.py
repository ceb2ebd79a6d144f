"""What a study is: its YAML, validated into a typed spec, its search space,
objectives and levels. Imports neither Ray nor torch (``tests/test_layout.py``)."""

from studies.spec.direction import Direction
from studies.spec.param import Param
from studies.spec.study import STUDIES_DIR, StudySpec, known_studies, load_spec, parse_override, resolve_study_path

__all__ = ["STUDIES_DIR", "Direction", "Param", "StudySpec", "known_studies", "load_spec", "parse_override",
           "resolve_study_path"]
