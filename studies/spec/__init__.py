"""What a study is: its YAML, validated into a typed spec, its search space and
objectives. Imports neither Ray nor torch (``tests/test_layout.py``)."""
