"""Declarative search spaces: entries -> Optuna distributions, errors, define-by-run."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from studies.errors import UserError
from studies.spec.param import Param
from studies.spec.search_space import DefineByRun, define_by_run, load_search_space, parse_search_space

SRC = "spaces/my_space.yaml"
REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "entry, expected",
    [
        ({"type": "float", "low": 1e-4, "high": 3e-3, "log": True}, FloatDistribution(1e-4, 3e-3, log=True)),
        ({"type": "float", "low": 0.0, "high": 0.3, "step": 0.05}, FloatDistribution(0.0, 0.3, step=0.05)),
        ({"type": "float", "low": 0, "high": 1}, FloatDistribution(0.0, 1.0)),
        ({"type": "int", "low": 1, "high": 4}, IntDistribution(1, 4)),
        ({"type": "int", "low": 2, "high": 64, "log": True}, IntDistribution(2, 64, log=True)),
        ({"type": "int", "low": 8, "high": 64, "step": 8}, IntDistribution(8, 64, step=8)),
        ({"type": "int", "low": 1.0, "high": 3.0}, IntDistribution(1, 3)),
        ({"type": "categorical", "choices": ["constant", "step", "linear"]},
         CategoricalDistribution(("constant", "step", "linear"))),
        ({"type": "categorical", "choices": [16, 32, 64]}, CategoricalDistribution((16, 32, 64))),
        ({"type": "categorical", "choices": [True, False]}, CategoricalDistribution((True, False))),
    ],
)
def test_good_entry_distribution(entry, expected):
    (param,) = parse_search_space({"x": entry}, SRC)
    assert param.name == "x"
    dist = param.distribution()
    assert dist == expected
    assert type(dist) is type(expected)
    if param.type == "int":
        assert isinstance(param.low, int) and isinstance(param.high, int)
    if param.type == "float":
        assert isinstance(param.low, float) and isinstance(param.high, float)


def test_the_yaml_loader_reads_exponents_without_a_dot_as_floats(tmp_path):
    """PyYAML alone (YAML 1.1) reads ``1e-4`` as a string; researchers write learning rates that way."""
    path = tmp_path / "space.yaml"
    path.write_text("lr: {type: float, low: 1e-4, high: 3E-3, log: true}\n"
                    "wd: {type: float, low: .5, high: 1_0.0}\n"
                    "n: {type: int, low: 1, high: 4}\n"
                    "tag: {type: categorical, choices: ['1e-3', 1e-3, inf]}\n")
    lr, wd, n, tag = load_search_space(path)
    assert lr.distribution() == FloatDistribution(1e-4, 3e-3, log=True)
    assert (wd.low, wd.high) == (0.5, 10.0)
    assert isinstance(n.low, int)
    assert tag.choices == ("1e-3", 1e-3, "inf")   # quoted stays a string; 'inf' is not YAML's .inf


def test_param_fields_and_probe_values():
    params = parse_search_space({
        "shape": {"type": "categorical", "choices": ["a", "b", "c"]},
        "w": {"type": "float", "low": 0.1, "high": 0.5, "when": {"shape": ["a", "b"]}},
        "n": {"type": "int", "low": 1, "high": 3, "when": {"shape": "c"}},
    }, SRC)
    shape, w, n = params
    assert [p.name for p in params] == ["shape", "w", "n"]
    assert shape.choices == ("a", "b", "c") and shape.when == {}
    assert w.when == {"shape": ("a", "b")}
    assert n.when == {"shape": ("c",)}       # a scalar becomes a one-value tuple
    assert shape.probe_values() == ["a", "b", "c"]
    assert w.probe_values() == [0.1, 0.5]
    assert w.active({"shape": "a"}) and not w.active({"shape": "c"}) and not w.active({})
    assert n.active({"shape": "c"}) and not n.active({"shape": "a"})


# (entry or whole-space dict, name the message must contain, fragment)
BAD = [
    ("missing-low", {"x": {"type": "float", "high": 1.0}}, "x.low", "missing"),
    ("missing-high", {"x": {"type": "int", "low": 1}}, "x.high", "missing"),
    ("low-eq-high", {"x": {"type": "float", "low": 1.0, "high": 1.0}}, "x", "expected low < high"),
    ("low-gt-high", {"x": {"type": "int", "low": 5, "high": 2}}, "x", "expected low < high"),
    ("log-low-zero", {"x": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, "x.low", "log-scaled range needs low > 0"),
    ("log-low-negative", {"x": {"type": "int", "low": -1, "high": 4, "log": True}}, "x.low", "log-scaled range needs low > 0"),
    ("log-not-bool", {"x": {"type": "float", "low": 0.1, "high": 1.0, "log": "yes"}}, "x.log", "expected true or false"),
    ("unknown-key", {"x": {"type": "float", "low": 0.0, "high": 1.0, "scale": "log"}}, "x.scale", "unknown key"),
    ("choices-on-float", {"x": {"type": "float", "low": 0.0, "high": 1.0, "choices": [1]}}, "x.choices", "unknown key"),
    ("low-on-categorical", {"x": {"type": "categorical", "choices": [1, 2], "low": 0}}, "x.low", "unknown key"),
    ("bad-type", {"x": {"type": "double", "low": 0.0, "high": 1.0}}, "x.type", "expected one of"),
    ("no-type", {"x": {"low": 0.0, "high": 1.0}}, "x.type", "expected one of"),
    ("not-a-mapping", {"x": [0.0, 1.0]}, "x", "expected a mapping"),
    ("empty-choices", {"x": {"type": "categorical", "choices": []}}, "x.choices", "non-empty list"),
    ("choices-not-list", {"x": {"type": "categorical", "choices": "abc"}}, "x.choices", "non-empty list"),
    ("duplicate-choices", {"x": {"type": "categorical", "choices": ["a", "b", "a"]}}, "x.choices", "duplicates"),
    ("non-scalar-choice", {"x": {"type": "categorical", "choices": ["a", [1, 2]]}}, "x.choices", "not a scalar"),
    ("when-unknown", {"x": {"type": "float", "low": 0.0, "high": 1.0, "when": {"nope": ["a"]}}}, "x.when.nope",
     "must name a parameter defined above x"),
    ("when-later", {
        "x": {"type": "float", "low": 0.0, "high": 1.0, "when": {"shape": ["a"]}},
        "shape": {"type": "categorical", "choices": ["a", "b"]},
    }, "x.when.shape", "must name a parameter defined above x"),
    ("when-self", {"x": {"type": "categorical", "choices": ["a"], "when": {"x": ["a"]}}}, "x.when.x", "defined above"),
    ("when-value-not-choice", {
        "shape": {"type": "categorical", "choices": ["a", "b"]},
        "x": {"type": "float", "low": 0.0, "high": 1.0, "when": {"shape": ["a", "c"]}},
    }, "x.when.shape", "'c' is not one of shape's choices ['a', 'b']"),
    ("non-numeric-low", {"x": {"type": "float", "low": "small", "high": 1.0}}, "x.low", "expected a finite number, found 'small'"),
    ("bool-high", {"x": {"type": "float", "low": 0.0, "high": True}}, "x.high", "expected a finite number"),
    ("inf-high", {"x": {"type": "float", "low": 0.0, "high": float("inf")}}, "x.high", "expected a finite number"),
    ("int-fractional-low", {"x": {"type": "int", "low": 1.5, "high": 4}}, "x.low", "expected an integer"),
    ("step-with-log", {"x": {"type": "float", "low": 0.01, "high": 1.0, "log": True, "step": 0.01}}, "x",
     "`step` and `log: true` cannot be combined"),
    ("step-zero", {"x": {"type": "float", "low": 0.0, "high": 1.0, "step": 0}}, "x.step", "0 < step <= high - low"),
    ("step-too-big", {"x": {"type": "int", "low": 0, "high": 4, "step": 5}}, "x.step", "0 < step <= high - low"),
    ("bad-name", {"learning-rate": {"type": "float", "low": 0.0, "high": 1.0}}, "'learning-rate'", "identifiers"),
]


@pytest.mark.parametrize("raw, name, fragment", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_entries(raw, name, fragment):
    with pytest.raises(UserError) as info:
        parse_search_space(raw, SRC)
    msg = str(info.value)
    assert msg.startswith(f"{SRC}: {name}")
    assert fragment in msg


def test_empty_space():
    with pytest.raises(UserError, match=f"^{SRC}: the search space is empty"):
        parse_search_space({}, SRC)


@pytest.mark.parametrize("when", [["shape"], "shape"], ids=["list", "string"])
def test_when_not_a_mapping(when):
    raw = {
        "shape": {"type": "categorical", "choices": ["a", "b"]},
        "x": {"type": "float", "low": 0.0, "high": 1.0, "when": when},
    }
    with pytest.raises(UserError, match=f"{SRC}: x.when: expected a mapping"):
        parse_search_space(raw, SRC)


def test_load_search_space_errors_name_the_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("lr: {type: float, low: 0.1, high: 0.01}\n")
    with pytest.raises(UserError, match=rf"^{re.escape(str(path))}: lr: expected low < high"):
        load_search_space(path)
    path.write_text("lr: {type: float, low: 0.1, high: [1\n")
    with pytest.raises(UserError, match=rf"^{re.escape(str(path))}: malformed YAML at line 2, column 1"):
        load_search_space(path)
    with pytest.raises(UserError, match="no such file"):
        load_search_space(tmp_path / "missing.yaml")


def test_bundled_mdn_ramp_space_parses():
    params = load_search_space(REPO / "search_spaces" / "mdn_ramp.yaml")
    by_name = {p.name: p for p in params}
    assert list(by_name) == ["ramp_shape", "initial_weight", "ramp_start", "ramp_length", "lr"]
    assert by_name["ramp_shape"].distribution() == CategoricalDistribution(("constant", "step", "linear", "exponential"))
    assert by_name["initial_weight"].distribution() == FloatDistribution(0.01, 0.5, log=True)
    assert by_name["ramp_start"].distribution() == FloatDistribution(0.0, 0.5)
    assert by_name["ramp_length"].distribution() == FloatDistribution(0.1, 0.4)
    assert by_name["lr"].distribution() == FloatDistribution(3e-4, 3e-3, log=True)
    assert by_name["initial_weight"].when == {"ramp_shape": ("step", "linear", "exponential")}
    assert by_name["ramp_length"].when == {"ramp_shape": ("linear", "exponential")}
    assert by_name["lr"].when == {}


def _ask_many(params, n=200, seed=0):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    hook = define_by_run(params)
    assert isinstance(hook, DefineByRun)
    trials = []
    for _ in range(n):
        trial = study.ask()
        hook(trial)
        trials.append(dict(trial.params))
    return trials


def test_define_by_run_conditional_parameters():
    params = load_search_space(REPO / "search_spaces" / "mdn_ramp.yaml")
    trials = _ask_many(params)
    shapes = {t["ramp_shape"] for t in trials}
    assert shapes == {"constant", "step", "linear", "exponential"}
    for t in trials:
        shape = t["ramp_shape"]
        expected = {"ramp_shape", "lr"}
        if shape in ("step", "linear", "exponential"):
            expected |= {"initial_weight", "ramp_start"}
        if shape in ("linear", "exponential"):
            expected |= {"ramp_length"}
        assert set(t) == expected, t
        assert 3e-4 <= t["lr"] <= 3e-3
        if "initial_weight" in t:
            assert 0.01 <= t["initial_weight"] <= 0.5
        if "ramp_length" in t:
            assert 0.1 <= t["ramp_length"] <= 0.4


def test_define_by_run_chained_conditions_and_types():
    params = parse_search_space({
        "a": {"type": "categorical", "choices": ["on", "off"]},
        "b": {"type": "int", "low": 1, "high": 4, "when": {"a": "on"}},
        "c": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.25, "when": {"b": [3, 4]}},
        "d": {"type": "int", "low": 8, "high": 32, "step": 8},
    }, SRC)
    trials = _ask_many(params, n=150, seed=1)
    seen_c = 0
    for t in trials:
        assert "d" in t and t["d"] in (8, 16, 24, 32)
        if t["a"] == "off":
            assert set(t) == {"a", "d"}
        else:
            assert isinstance(t["b"], int) and 1 <= t["b"] <= 4
            assert ("c" in t) == (t["b"] in (3, 4))
            if "c" in t:
                seen_c += 1
                assert t["c"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert seen_c > 10


def test_define_by_run_reproducible():
    params = load_search_space(REPO / "search_spaces" / "mdn_ramp.yaml")
    assert _ask_many(params, n=20, seed=3) == _ask_many(params, n=20, seed=3)
    assert _ask_many(params, n=20, seed=3) != _ask_many(params, n=20, seed=4)


def test_param_equality():
    a = Param("x", "float", low=0.0, high=1.0)
    assert a == Param("x", "float", low=0.0, high=1.0)
    assert a != Param("x", "float", low=0.0, high=2.0)
