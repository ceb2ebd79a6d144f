"""What used to pass validation and fail late (a report traceback, a sampler's error
after Ray started, a study that ran for nothing) is refused when the spec is read:
one line naming the file, the key and why; the valid neighbour of each case loads."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.experiments.registry import get_family
from studies.errors import UserError
from studies.spec import study as study_module
from studies.spec.search_space import MAX_CATEGORICAL_CHOICES, parse_search_space
from studies.spec.study import SEED_LIMIT, STUDIES_DIR, load_spec

SRC = "spaces/s.yaml"
BUNDLED_SPEC = STUDIES_DIR / "mdn_ramp.yaml"


def _refused(space: dict[str, Any]) -> str:
    with pytest.raises(UserError) as info:
        parse_search_space(space, SRC)
    return str(info.value)


def _shape(**extra: Any) -> dict[str, Any]:
    return {"shape": {"type": "categorical", "choices": ["a", "b"]}, **extra}


# ---------------------------------------------------------------- item 11: a `when` that can never hold

def test_a_when_naming_a_value_its_numeric_parent_cannot_take_is_refused():
    space = {"n": {"type": "int", "low": 1, "high": 4},
             "x": {"type": "float", "low": 0.0, "high": 1.0, "when": {"n": [7]}}}
    assert _refused(space) == (f"{SRC}: x.when.n: 7 is not a value n can take (an integer in [1, 4]), "
                               "so x can never be active")
    space["x"]["when"] = {"n": [4]}
    assert [p.name for p in parse_search_space(space, SRC)] == ["n", "x"]


def test_a_when_off_its_parents_step_grid_is_refused():
    space = {"d": {"type": "float", "low": 0.0, "high": 0.3, "step": 0.1},
             "x": {"type": "float", "low": 0.0, "high": 1.0, "when": {"d": [0.1, 0.15]}}}
    assert _refused(space) == (f"{SRC}: x.when.d: 0.15 is not a value d can take (a number in [0, 0.3] on the grid "
                               "0 + k * 0.1); list only values d can take")
    space["x"]["when"] = {"d": [0.1, 0.2]}
    assert parse_search_space(space, SRC)[1].when == {"d": (0.1, 0.2)}


def test_an_empty_when_list_is_refused():
    assert _refused(_shape(x={"type": "float", "low": 0.0, "high": 1.0, "when": {"shape": []}})) == (
        f"{SRC}: x.when.shape: is empty, so x can never be active; list at least one value of shape")


def test_conditions_that_contradict_through_a_chain_are_refused():
    """y is searched only when shape is a; x asks for shape b and a value of y: never both."""
    space = _shape(y={"type": "categorical", "choices": [1, 2], "when": {"shape": ["a"]}},
                   x={"type": "float", "low": 0.0, "high": 1.0, "when": {"shape": ["b"], "y": [1]}})
    assert _refused(space) == (f"{SRC}: x.when: shape in ['b'] and y in [1] never hold in the same trial "
                               "(y is active only when shape is in ['a']), so x can never be active")
    space["x"]["when"] = {"shape": ["a"], "y": [1]}
    assert [p.name for p in parse_search_space(space, SRC)] == ["shape", "y", "x"]


def test_a_condition_on_a_parameter_two_steps_away_names_the_whole_chain():
    space = _shape(y={"type": "categorical", "choices": [1, 2], "when": {"shape": ["a"]}},
                   z={"type": "categorical", "choices": ["p", "q"], "when": {"y": [1]}},
                   x={"type": "float", "low": 0.0, "high": 1.0, "when": {"z": ["p"], "shape": ["b"]}})
    assert _refused(space) == (f"{SRC}: x.when: z in ['p'] and shape in ['b'] never hold in the same trial "
                               "(y is active only when shape is in ['a']; z is active only when y is in [1]), "
                               "so x can never be active")
    space["x"]["when"] = {"z": ["p"], "shape": ["a"]}
    assert len(parse_search_space(space, SRC)) == 4


def test_an_inactive_parent_reads_as_null_as_the_sampler_sees_it():
    """Param.active reads an inactive parameter as None: a condition listing null holds then."""
    space = _shape(y={"type": "categorical", "choices": [None, 1], "when": {"shape": ["a"]}},
                   x={"type": "float", "low": 0.0, "high": 1.0, "when": {"shape": ["b"], "y": [None]}})
    assert len(parse_search_space(space, SRC)) == 3


# ---------------------------------------------------------------- item 10: a categorical with too many choices

def test_a_categorical_with_more_choices_than_the_limit_is_refused():
    too_many = {"k": {"type": "categorical", "choices": list(range(MAX_CATEGORICAL_CHOICES + 1))}}
    assert _refused(too_many) == (
        f"{SRC}: k.choices: has {MAX_CATEGORICAL_CHOICES + 1} choices, expected at most {MAX_CATEGORICAL_CHOICES} "
        "(a categorical factor is a row per choice in every ablation table and needs trials at each choice; "
        "bin it as an int or float range, or split the study)")
    at_limit = {"k": {"type": "categorical", "choices": list(range(MAX_CATEGORICAL_CHOICES))}}
    assert len(parse_search_space(at_limit, SRC)[0].choices) == MAX_CATEGORICAL_CHOICES


# ---------------------------------------------------------------- item 12: seeds, non-finite config, metric names

def _load(*overrides: str, **kw: Any) -> Any:
    return load_spec(BUNDLED_SPEC, overrides=overrides, check_family=kw.pop("check_family", False), **kw)


def test_a_seed_numpy_cannot_take_with_the_offsets_is_refused():
    with pytest.raises(UserError) as info:
        _load("seed=4294967296")
    assert str(info.value) == (f"{BUNDLED_SPEC}: seed: expected a non-negative integer below 2**31 (2147483648; "
                               "seeds derived from it must stay below numpy's 2**32), found 4294967296")
    with pytest.raises(UserError, match=r"seed: expected a non-negative integer below 2\*\*31 .*found 2147483648$"):
        _load(f"seed={SEED_LIMIT}")
    spec = _load(f"seed={SEED_LIMIT - 1}")
    # the largest seed the designed stage derives (seed + 1000 + i) still fits numpy's and Optuna's 2**32
    assert spec.seed + 1000 + max(spec.ablation.confirm.seeds, 3) < 2**32


def test_a_search_seed_past_the_limit_is_refused():
    with pytest.raises(UserError) as info:
        _load("search.seed=4294967296")
    assert str(info.value) == (f"{BUNDLED_SPEC}: search.seed: is 4294967296, expected an integer below 2**31 "
                               "(2147483648; seeds derived from it must stay below numpy's 2**32)")
    assert _load(f"search.seed={SEED_LIMIT - 1}").search.seed == SEED_LIMIT - 1


@pytest.mark.parametrize("text, shown", [(".nan", "nan"), (".inf", "inf"), ("-.inf", "-inf")])
def test_a_non_finite_config_value_is_refused(text: str, shown: str):
    with pytest.raises(UserError) as info:
        _load(f"config.grad_clip={text}")
    assert str(info.value) == f"{BUNDLED_SPEC}: config.grad_clip: is {shown}, expected a finite number"
    assert _load("config.grad_clip=0.5").config["grad_clip"] == 0.5


def test_a_non_finite_value_inside_a_config_list_is_refused(tmp_path: Path):
    raw = yaml.safe_load(BUNDLED_SPEC.read_text())
    raw["config"]["weights"] = [1.0, float("inf")]
    raw["search_space"] = str(BUNDLED_SPEC.parents[1] / "search_spaces" / "mdn_ramp.yaml")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError) as info:
        load_spec(path, check_family=False)
    assert str(info.value) == f"{path}: config.weights[1]: is inf, expected a finite number"


def _declaring(monkeypatch: pytest.MonkeyPatch, metrics: Any) -> None:
    """mdn_motion as the spec check sees it, declaring ``metrics`` (config -> names; None: nothing)."""
    family = dataclasses.replace(get_family("mdn_motion"), metrics=metrics)
    monkeypatch.setattr(study_module, "get_family", lambda name: family)


def test_a_metric_the_family_never_reports_is_refused(monkeypatch: pytest.MonkeyPatch):
    reported = ["train_loss", "val_mse", "val_nll"]
    _declaring(monkeypatch, lambda config: reported)
    with pytest.raises(UserError) as info:
        _load("metric=val_mes", check_family=True)
    assert str(info.value) == (f"{BUNDLED_SPEC}: metric: 'val_mes' is not a metric family mdn_motion reports with "
                               "this config (it reports: train_loss, val_mse, val_nll)")
    with pytest.raises(UserError, match=r"report\[0\]: 'val_nl' is not a metric family mdn_motion reports"):
        _load("report=[val_nl]", check_family=True)
    assert _load("report=[val_nll]", check_family=True).metric == "val_mse"


def test_the_metric_check_sees_the_config(monkeypatch: pytest.MonkeyPatch):
    """What a family reports may depend on its config (cvae_video: one PSNR per clip frame)."""
    _declaring(monkeypatch, lambda config: ["val_mse", *(f"val_d{d}" for d in range(config.d_model // 16))])
    assert _load("report=[val_d2]", check_family=True).report[0].metric == "val_d2"   # d_model 48
    with pytest.raises(UserError, match=r"report\[0\]: 'val_d2' is not .* \(it reports: val_mse, val_d0, val_d1\)$"):
        _load("report=[val_d2]", "config.d_model=32", check_family=True)


def test_a_bundled_family_refuses_a_misspelt_metric():
    """The bundled families declare what they report (FamilyDef.metrics), so a typo
    in a bundled spec's metric fails at load, before Ray starts."""
    with pytest.raises(UserError) as info:
        _load("metric=val_mes", check_family=True)
    assert str(info.value).startswith(f"{BUNDLED_SPEC}: metric: 'val_mes' is not a metric family mdn_motion reports "
                                      "with this config (it reports: epoch, train_loss, ")
    assert "val_mse" in str(info.value)
    with pytest.raises(UserError, match=r"report\[1\]: 'val_nl' is not a metric family mdn_motion reports"):
        _load("report=[val_kp_mse, val_nl]", check_family=True)
    assert _load("metric=val_nll", "report=[gen_jerk_ratio]", check_family=True).metric == "val_nll"


def test_cvae_video_reports_one_psnr_per_generated_frame_of_its_clip_length():
    spec = STUDIES_DIR / "kl_cycle.yaml"
    assert load_spec(spec, overrides=["report=[val_psnr_frame_07]"]).report[0].metric == "val_psnr_frame_07"
    with pytest.raises(UserError, match=r"report\[0\]: 'val_psnr_frame_07' is not a metric family cvae_video reports "
                                        r"with this config \(it reports: .*val_psnr_frame_03, val_psnr, "):
        load_spec(spec, overrides=["report=[val_psnr_frame_07]", "config.clip_length=4"])


@pytest.mark.parametrize("smoke", [False, True])
@pytest.mark.parametrize("path", sorted(STUDIES_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_bundled_spec_reports_metrics_its_family_declares(path: Path, smoke: bool):
    spec = load_spec(path, smoke=smoke)
    declared = get_family(spec.family).metrics
    assert declared is not None
    assert {*spec.metrics, *(s.metric for s in spec.report)} <= set(declared(spec.family_info.config(
        {**spec.config, "max_epochs": spec.budget.max_epochs, "seed": spec.seed})))


def test_a_family_that_declares_nothing_is_left_to_its_trials(monkeypatch: pytest.MonkeyPatch):
    """Without a declaration (a user's family may have none) the name is checked when trials report."""
    _declaring(monkeypatch, None)
    assert _load("metric=anything", check_family=True).metric == "anything"
    assert _load("report=[anything_else]", check_family=True).report[0].metric == "anything_else"
