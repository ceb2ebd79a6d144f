"""Study specs: the bundled spec, smoke merge, --set overrides and every validation error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from studies.errors import UserError
from studies.spec.search_space import parse_search_space
from studies.spec.study import (
    SEARCH_SPACES_DIR,
    STUDIES_DIR,
    Ablation,
    LeaveOneOut,
    StudySpec,
    deep_merge,
    known_studies,
    load_spec,
    parse_override,
    resolve_study_path,
)

BUNDLED_SPEC = STUDIES_DIR / "mdn_ramp.yaml"
BUNDLED_SPACE = SEARCH_SPACES_DIR / "mdn_ramp.yaml"
PARAM_NAMES = ["ramp_shape", "initial_weight", "ramp_start", "ramp_length", "lr"]


def _copy_spec(tmp_path: Path, edit=None, name: str = "study.yaml") -> Path:
    """A copy of the bundled spec, optionally edited as a dict."""
    raw = yaml.safe_load(BUNDLED_SPEC.read_text())
    if edit is not None:
        edit(raw)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _copy_space(tmp_path: Path, edit=None, name: str = "space.yaml") -> Path:
    raw = yaml.safe_load(BUNDLED_SPACE.read_text())
    if edit is not None:
        edit(raw)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# ---------------------------------------------------------------- the bundled spec

def test_resolve_bundled_study():
    assert resolve_study_path("mdn_ramp") == BUNDLED_SPEC
    assert "mdn_ramp" in known_studies()
    assert resolve_study_path(str(BUNDLED_SPEC)) == BUNDLED_SPEC.resolve()


def test_resolve_errors(tmp_path):
    with pytest.raises(UserError, match="unknown study 'no_such_study'.*mdn_ramp"):
        resolve_study_path("no_such_study")
    missing = tmp_path / "missing.yaml"
    with pytest.raises(UserError) as info:
        resolve_study_path(str(missing))
    assert str(info.value) == f"{missing}: no such study spec file"


def test_bundled_spec_loads():
    spec = load_spec(BUNDLED_SPEC)
    assert spec.name == "mdn_ramp" and spec.path == BUNDLED_SPEC
    assert spec.family == "mdn_motion" and spec.trainable is None
    assert spec.family_info is not None and spec.family_info.name == "mdn_motion"
    assert (spec.metric, spec.mode, spec.seed) == ("val_mse", "min", 0)
    b = spec.budget
    assert (b.max_epochs, b.grace_period, b.reduction_factor, b.num_samples, b.checkpoint_every, b.max_failures) == (18, 2, 3.0, 48, 3, 2)
    assert isinstance(b.reduction_factor, float)
    assert (spec.resources.cpus_per_trial, spec.resources.gpus_per_trial, spec.resources.max_concurrent) == (1.0, 0.0, 0)
    assert spec.config["num_sequences"] == 256 and spec.config["d_model"] == 48
    assert spec.search_space == "mdn_ramp" and spec.search_space_path == BUNDLED_SPACE
    assert [p.name for p in spec.params] == PARAM_NAMES
    assert spec.ablation.factors == PARAM_NAMES
    assert spec.ablation.baseline == {"ramp_shape": "constant", "lr": 1e-3, "ramp_start": 0.0, "ramp_length": 0.25}
    assert spec.ablation.confirm.enabled is True and spec.ablation.confirm.top_k == 2
    assert spec.ablation.leave_one_out == LeaveOneOut(enabled=True, seeds=3, sweep=["ramp_shape"])
    assert spec.metric_scale == "ratio"
    smoke = load_spec(BUNDLED_SPEC, smoke=True)
    assert smoke.ablation.confirm.enabled is False and smoke.ablation.leave_one_out.enabled is False
    assert spec.description.startswith("Does ramping")
    tc = spec.trial_config()
    assert tc["max_epochs"] == 18 and tc["seed"] == 0 and tc["checkpoint_every"] == 3 and tc["cpus_per_trial"] == 1.0
    assert tc["precision"] == "fp32"
    assert tc["d_model"] == 48
    d = spec.to_dict()
    assert d["path"] == str(BUNDLED_SPEC) and d["params"][0]["name"] == "ramp_shape"


def test_smoke_merge_changes_budget_and_config():
    full = load_spec(BUNDLED_SPEC)
    smoke = load_spec(BUNDLED_SPEC, smoke=True)
    assert (smoke.budget.max_epochs, smoke.budget.grace_period, smoke.budget.num_samples, smoke.budget.checkpoint_every) == (4, 1, 6, 2)
    # untouched budget keys survive the merge
    assert smoke.budget.reduction_factor == full.budget.reduction_factor == 3.0
    assert smoke.budget.max_failures == 2
    # config: merged key by key, not replaced
    assert smoke.config["num_sequences"] == 48 and smoke.config["d_model"] == 16 and smoke.config["gen_steps"] == 8
    assert smoke.config["max_length"] == 64 and smoke.config["n_heads"] == 4
    assert full.config["num_sequences"] == 256 and "gen_steps" not in full.config
    assert smoke.trial_config()["max_epochs"] == 4


def test_overrides_apply_after_smoke():
    spec = load_spec(BUNDLED_SPEC, smoke=True, overrides=["budget.num_samples=8", "config.weight_decay=1e-3",
                                                          "budget.max_epochs=5", "config.sampling=random", "seed=7"])
    assert spec.budget.num_samples == 8 and spec.budget.max_epochs == 5
    assert spec.config["weight_decay"] == 0.001 and spec.config["sampling"] == "random"
    assert spec.seed == 7 and spec.trial_config()["seed"] == 7


def test_override_new_config_key_and_nested_ablation():
    spec = load_spec(BUNDLED_SPEC, overrides=["ablation.confirm.top_k=5", "ablation.bins.lr=[3.0e-4, 1.0e-3, 3.0e-3]"])
    assert spec.ablation.confirm.top_k == 5
    assert spec.ablation.bins == {"lr": [3e-4, 1e-3, 3e-3]}


def test_name_and_search_space_path_replace_the_specs(tmp_path):
    spec_path = _copy_spec(tmp_path)
    space = _copy_space(tmp_path, lambda raw: raw["lr"].update(low=1e-4))
    spec = load_spec(spec_path, search_space_path=space, name="renamed")
    assert spec.name == "renamed" and spec.search_space_path == space
    assert spec.params[-1].low == 1e-4


def test_relative_search_space_file(tmp_path):
    _copy_space(tmp_path, name="my_space.yaml")
    spec_path = _copy_spec(tmp_path, lambda raw: raw.update(search_space="my_space.yaml"))
    spec = load_spec(spec_path)
    assert spec.search_space_path == (tmp_path / "my_space.yaml").resolve()
    assert [p.name for p in spec.params] == PARAM_NAMES


def test_deep_merge_does_not_mutate():
    base = {"a": {"b": 1, "c": [1]}, "d": 2}
    out = deep_merge(base, {"a": {"b": 3}, "e": {"f": 4}})
    assert out == {"a": {"b": 3, "c": [1]}, "d": 2, "e": {"f": 4}}
    assert base == {"a": {"b": 1, "c": [1]}, "d": 2}
    out["a"]["c"].append(2)
    assert base["a"]["c"] == [1]


# ---------------------------------------------------------------- parse_override

@pytest.mark.parametrize(
    "text, parts, value",
    [
        ("budget.num_samples=8", ["budget", "num_samples"], 8),
        ("seed=-3", ["seed"], -3),
        ("config.lr=1e-3", ["config", "lr"], 1e-3),      # YAML 1.1 reads this as a string
        ("config.lr=1E-3", ["config", "lr"], 1e-3),
        ("config.lr=-2.5e-4", ["config", "lr"], -2.5e-4),
        ("config.lr=0.001", ["config", "lr"], 0.001),
        ("config.lr=3.0e-4", ["config", "lr"], 3e-4),
        ("config.dropout=.5", ["config", "dropout"], 0.5),
        ("budget.max_epochs=1e2", ["budget", "max_epochs"], 100.0),
        ("config.sampling=random", ["config", "sampling"], "random"),
        ("config.ramp_shape=exponential", ["config", "ramp_shape"], "exponential"),  # has an 'e', still a string
        ("description=a new study", ["description"], "a new study"),
        ("config.name=nan", ["config", "name"], "nan"),
        ("config.name=inf", ["config", "name"], "inf"),
        ("config.name=1.0.0", ["config", "name"], "1.0.0"),
        ("config.flag=true", ["config", "flag"], True),
        ("config.flag=false", ["config", "flag"], False),
        ("config.flag=True", ["config", "flag"], True),
        ("config.flag=no", ["config", "flag"], False),
        ("config.name=", ["config", "name"], ""),
        ("config.name=null", ["config", "name"], None),
        (" budget.num_samples = 8 ", ["budget", "num_samples"], 8),
        ("ablation.factors=[lr, ramp_shape]", ["ablation", "factors"], ["lr", "ramp_shape"]),
        ("ablation.baseline={ramp_shape: linear}", ["ablation", "baseline"], {"ramp_shape": "linear"}),
        ("config.name=a=b", ["config", "name"], "a=b"),
    ],
)
def test_parse_override(text, parts, value):
    got_parts, got = parse_override(text)
    assert got_parts == parts
    assert got == value
    assert type(got) is type(value)


@pytest.mark.parametrize("text", ["budget.num_samples", "config..lr=1", "config.lr-x=1", "=3", "1abc=2"])
def test_parse_override_errors(text):
    with pytest.raises(UserError, match="--set"):
        parse_override(text)


def test_parse_override_keeps_quoted_strings():
    assert parse_override("config.version='1'") == (["config", "version"], "1")
    assert parse_override("config.version='1.0'") == (["config", "version"], "1.0")


# ---------------------------------------------------------------- errors from --set

@pytest.mark.parametrize(
    "override, key, fragment",
    [
        ("budget.foo=1", "budget", "unknown key(s) ['foo']"),
        ("budget.num_samples=many", "budget", "`num_samples` is 'many'"),
        ("budget.grace_period=20", "budget.grace_period", "is 20, expected 1 <= grace_period <= max_epochs (18)"),
        ("budget.max_epochs=1", "budget.grace_period", "max_epochs (1)"),
        ("budget.reduction_factor=1.5", "budget.reduction_factor", "expected >= 2"),
        ("budget.num_samples=0", "budget.num_samples", "1 <= num_samples"),
        ("config.nonexistent=1", "config", "unknown key(s) ['nonexistent'] for MdnMotionConfig"),
        ("config.weight_decay=fast", "config", "`weight_decay` is 'fast'"),
        ("config.weight_decay=-0.1", "config", "`weight_decay` is -0.1, expected >= 0"),
        ("config.dropout=1", "config", "`dropout` is 1.0, expected 0 <= dropout < 1"),
        ("config.batch_size=0", "config", "`batch_size` is 0, expected >= 1"),
        ("config.d_model=30", "config", "`d_model` (30) must be divisible by `n_heads` (4)"),
        ("mode=maximize", "mode", "expected min or max, found 'maximize'"),
        ("mode=MIN", "mode", "expected min or max"),
        ("family=nope", "family", "unknown family 'nope' (known: mdn_motion,"),
        ("trainable=pkg.mod:fn", "family", "give exactly one of `family`"),
        ("metric=", "metric", "expected the name of a reported metric"),
        ("seed=-1", "seed", "non-negative integer"),
        ("seed=true", "seed", "non-negative integer"),
        ("resources.cpus_per_trial=0", "resources.cpus_per_trial", "expected 0 < cpus_per_trial"),
        ("resources.gpus_per_trial=1.5", "resources.gpus_per_trial", "whole number of GPUs"),
        ("resources.max_concurrent=-1", "resources.max_concurrent", "expected >= 0"),
        ("resources.precision=fp16", "resources.precision", "expected one of fp32, bf16"),
        ("config=5", "config", "expected a mapping"),
        ("budget=foo", "budget", "expected a mapping"),
        ("ablation.baseline.ramp_shape=wiggly", "ablation.baseline.ramp_shape",
         "'wiggly' is not one of ['constant', 'step', 'linear', 'exponential']"),
        ("ablation.baseline.dropout=0.1", "ablation.baseline.dropout", "not a search-space parameter"),
        ("ablation.factors=[ramp_shape, bogus]", "ablation.factors", "'bogus' is not a search-space parameter"),
        ("ablation.bins.ramp_shape=[0, 1]", "ablation.bins.ramp_shape", "numeric search-space parameter"),
        ("ablation.bins.lr=[1.0e-3, 1.0e-4]", "ablation.bins.lr", "increasing list"),
        ("ablation.confirm.seeds=0", "ablation.confirm", "must be >= 1"),
        ("ablation.confirm.bogus=1", "ablation.confirm", "unknown key(s) ['bogus']"),
        ("search_space=no_such_space", "no_such_space.yaml", "no such file"),
        # search:
        ("search.sampler=annealing", "search.sampler", "is 'annealing', expected one of tpe, random, qmc, gp, cmaes"),
        ("search.sampler=TPE", "search.sampler", "expected one of tpe"),
        ("search.seed=-1", "search.seed", "is -1, expected an integer >= 0"),
        ("search.seed=1.5", "search.seed", "is 1.5, expected an integer >= 0"),
        ("search.seed=true", "search.seed", "is True, expected an integer >= 0"),
        ("search.n_startup_trials=-2", "search.n_startup_trials", "is -2, expected an integer >= 0"),
        ("search.multivariate=3", "search.multivariate", "is 3, expected true or false"),
        ("search.group=true", "search.group", "expected multivariate: true as well"),
        ("search.bogus=1", "search.bogus", "unknown key (expected one of ['sampler', 'seed',"),
        ("search=tpe", "search", "expected a mapping"),
        # metric_scale:
        ("metric_scale=percent", "metric_scale", "is 'percent', expected one of ratio, interval, log"),
        ("metric_scale=[ratio]", "metric_scale", "expected one of ratio, interval, log"),
        # ablation.leave_one_out:
        ("ablation.leave_one_out.seeds=0", "ablation.leave_one_out.seeds", "is 0, expected >= 1"),
        ("ablation.leave_one_out.bogus=1", "ablation.leave_one_out", "unknown key(s) ['bogus']"),
        ("ablation.leave_one_out.enabled=maybe", "ablation.leave_one_out", "`enabled` is 'maybe'"),
        ("ablation.leave_one_out=3", "ablation.leave_one_out", "expected a mapping"),
        # numeric baselines
        ("ablation.baseline.lr=1.0e-2", "ablation.baseline.lr", "is 0.01, expected a number in [0.0003, 0.003]"),
        ("ablation.baseline.lr=0", "ablation.baseline.lr", "is 0, expected a number in [0.0003, 0.003]"),
        ("ablation.baseline.lr=fast", "ablation.baseline.lr", "is 'fast', expected a number"),
        ("ablation.baseline.lr=true", "ablation.baseline.lr", "is True, expected a number"),
        ("ablation.baseline.ramp_start=[0.1]", "ablation.baseline.ramp_start", "expected a number in [0.0, 0.5]"),
    ],
)
def test_bad_overrides_name_file_and_key(tmp_path, override, key, fragment):
    path = _copy_spec(tmp_path)
    with pytest.raises(UserError) as info:
        load_spec(path, overrides=[override])
    msg = str(info.value)
    if key.endswith(".yaml"):  # the error is about the search-space file itself
        assert msg.startswith(str(SEARCH_SPACES_DIR / key))
    else:
        assert msg.startswith(f"{path}: {key}")
    assert fragment in msg


@pytest.mark.parametrize(
    "override, key",
    [("foo=1", "'foo'"), ("smoke.budget.max_epochs=2", "'smoke'"), ("description.x=1", "'description'"),
     ("config.d_model.x=1", "'d_model'")],
)
def test_bad_override_keys(tmp_path, override, key):
    # errors in the --set text itself name the override rather than the file
    path = _copy_spec(tmp_path)
    with pytest.raises(UserError) as info:
        load_spec(path, overrides=[override])
    msg = str(info.value)
    assert msg.startswith(f"--set {override}: ")
    assert key in msg


def test_override_into_empty_section(tmp_path):
    path = tmp_path / "study.yaml"
    text = BUNDLED_SPEC.read_text().replace("  cpus_per_trial: 1\n  gpus_per_trial: 0\n", "")
    assert "resources:\nconfig:" in text
    path.write_text(text)
    assert load_spec(path).resources.cpus_per_trial == 1.0   # null section -> defaults
    spec = load_spec(path, overrides=["resources.cpus_per_trial=2"])
    assert spec.resources.cpus_per_trial == 2.0


# ---------------------------------------------------------------- errors in the files

def test_malformed_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("family: mdn_motion\nbudget: {max_epochs: 3\nmetric: val_mse\n")
    with pytest.raises(UserError) as info:
        load_spec(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: malformed YAML at line ")


@pytest.mark.parametrize(
    "text, fragment",
    [("", "the file is empty"), ("- a\n- b\n", "expected a mapping of keys at the top level, found list"),
     ("just a string\n", "found str")],
)
def test_not_a_mapping(tmp_path, text, fragment):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}: ")
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "edit, key, fragment",
    [
        (lambda r: r.update(budgett={"max_epochs": 3}), "budgett", "unknown key"),
        (lambda r: r.update(mode="maximise"), "mode", "expected min or max"),
        (lambda r: r.update(family="mdn"), "family", "unknown family 'mdn'"),
        (lambda r: r.pop("family"), "family", "give exactly one"),
        (lambda r: r.update(trainable="no_colon"), "family", "give exactly one"),
        (lambda r: (r.pop("family"), r.update(trainable="no_colon")), "trainable", "expected 'package.module:function'"),
        (lambda r: r.pop("metric"), "metric", "expected the name of a reported metric"),
        (lambda r: r["budget"].update(reduction_factor=1), "budget.reduction_factor", "is 1.0, expected >= 2"),
        (lambda r: r["budget"].update(patience=3), "budget", "unknown key(s) ['patience']"),
        (lambda r: r["config"].update(n_head=4), "config", "unknown key(s) ['n_head']"),
        (lambda r: r["config"].update(sampling="beam"), "config", "`sampling` is 'beam'"),
        (lambda r: r["ablation"].update(baseline={"ramp_shape": "cosine"}), "ablation.baseline.ramp_shape",
         "'cosine' is not one of"),
        (lambda r: r["ablation"].update(factors=["ramp_shape", "dropout"]), "ablation.factors",
         "'dropout' is not a search-space parameter"),
        (lambda r: r.update(ablation=["ramp_shape"]), "ablation", "expected a mapping"),
        (lambda r: r.update(smoke=[1, 2]), "smoke", "expected a mapping of overrides"),
    ],
)
def test_bad_spec_files(tmp_path, edit, key, fragment):
    path = _copy_spec(tmp_path, edit)
    with pytest.raises(UserError) as info:
        load_spec(path, smoke=True)
    msg = str(info.value)
    assert msg.startswith(f"{path}: {key}")
    assert fragment in msg


@pytest.mark.parametrize(
    "edit, key, fragment",
    [
        (lambda r: r.update(dropout_rate={"type": "float", "low": 0.0, "high": 0.3}), "dropout_rate",
         "not a parameter of family mdn_motion"),
        (lambda r: r["ramp_shape"].update(choices=["constant", "step", "linear", "exponential", "wiggly"]), "ramp_shape",
         "value 'wiggly' is not valid for family mdn_motion"),
        (lambda r: r.update(sampling={"type": "categorical", "choices": ["random", "greedy"]}), "sampling",
         "value 'greedy' is not valid"),
        (lambda r: r.update(n_heads={"type": "int", "low": 5, "high": 6}), "n_heads",
         "value 5 is not valid"),                         # d_model 48 is not divisible by 5
        (lambda r: r.update(val_fraction={"type": "float", "low": 0.1, "high": 1.0}), "val_fraction",
         "value 1.0 is not valid"),
        (lambda r: r["lr"].update(low=-1.0), "lr.low", "log-scaled range needs low > 0"),
    ],
)
def test_bad_search_spaces(tmp_path, edit, key, fragment):
    spec_path = _copy_spec(tmp_path)
    space = _copy_space(tmp_path, edit)
    with pytest.raises(UserError) as info:
        load_spec(spec_path, search_space_path=space)
    msg = str(info.value)
    assert msg.startswith(f"{space}: {key}")
    assert fragment in msg


def test_search_space_missing_a_baseline_parameter(tmp_path):
    # the spec's ablation names ramp_shape; a search space without it is an error of the spec
    spec_path = _copy_spec(tmp_path, lambda r: r["ablation"].update(factors=["lr"]))
    space = tmp_path / "space.yaml"
    space.write_text("lr: {type: float, low: 3.0e-4, high: 3.0e-3, log: true}\n")
    with pytest.raises(UserError) as info:
        load_spec(spec_path, search_space_path=space)
    assert str(info.value).startswith(f"{spec_path}: ablation.baseline.ramp_shape: not a search-space parameter")


def test_missing_search_space_file(tmp_path):
    spec_path = _copy_spec(tmp_path)
    with pytest.raises(UserError) as info:
        load_spec(spec_path, search_space_path=tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: no such file"


def test_copy_in_tmp_path_is_equivalent(tmp_path):
    shutil.copy(BUNDLED_SPEC, tmp_path / "mdn_ramp.yaml")
    a = load_spec(tmp_path / "mdn_ramp.yaml", smoke=True)
    b = load_spec(BUNDLED_SPEC, smoke=True)
    assert a.name == b.name and a.budget == b.budget and a.config == b.config and a.params == b.params


# ---------------------------------------------------------------- search:, metric_scale:, leave_one_out:

CONTINUOUS_SPACE = """\
lr:         {type: float, low: 3.0e-4, high: 3.0e-3, log: true}
dropout:    {type: float, low: 0.0, high: 0.3, step: 0.1}
n_layers:   {type: int, low: 1, high: 3}
batch_size: {type: int, low: 16, high: 64, step: 16}
"""


def _continuous(tmp_path: Path, baseline: dict | None = None, space: str = CONTINUOUS_SPACE) -> tuple[Path, Path]:
    """The bundled spec over a space without categorical or conditional parameters."""
    def edit(raw):
        raw["ablation"].update(factors=["lr", "n_layers"], baseline=baseline or {})
        raw["ablation"].pop("leave_one_out")
    (tmp_path / "continuous.yaml").write_text(space)
    return _copy_spec(tmp_path, edit), tmp_path / "continuous.yaml"


def test_search_defaults_follow_the_spec():
    spec = load_spec(BUNDLED_SPEC)
    assert (spec.search.sampler, spec.search.seed, spec.search.n_startup_trials) == ("tpe", 0, 12)  # a quarter of 48
    assert spec.search.multivariate is None and spec.search.group is False
    smoke = load_spec(BUNDLED_SPEC, smoke=True, overrides=["seed=7"])
    assert (smoke.search.seed, smoke.search.n_startup_trials) == (7, 6)  # every one of 6 trials
    assert load_spec(BUNDLED_SPEC, overrides=["budget.num_samples=20"]).search.n_startup_trials == 10
    assert load_spec(BUNDLED_SPEC, overrides=["search.seed=3", "seed=7"]).search.seed == 3
    assert load_spec(BUNDLED_SPEC).to_dict()["search"]["sampler"] == "tpe"


@pytest.mark.parametrize("sampler", ["tpe", "random", "qmc", "gp"])
def test_search_sampler_override(sampler):
    spec = load_spec(BUNDLED_SPEC, overrides=[f"search.sampler={sampler}", "search.seed=5"])
    assert spec.search.sampler == sampler and spec.search.seed == 5
    assert spec.search.n_startup_trials == (12 if sampler in ("tpe", "gp") else None)


def test_search_options_that_the_sampler_takes():
    spec = load_spec(BUNDLED_SPEC, overrides=["search.n_startup_trials=0", "search.multivariate=true", "search.group=true"])
    assert (spec.search.n_startup_trials, spec.search.multivariate, spec.search.group) == (0, True, True)
    assert load_spec(BUNDLED_SPEC, overrides=["search.sampler=gp", "search.n_startup_trials=4"]).search.n_startup_trials == 4


@pytest.mark.parametrize(
    "overrides, key, fragment",
    [
        (["search.sampler=random", "search.n_startup_trials=5"], "search.n_startup_trials",
         "sampler random does not take n_startup_trials (it takes: seed)"),
        (["search.sampler=gp", "search.multivariate=true"], "search.multivariate", "sampler gp does not take multivariate"),
        (["search.sampler=qmc", "search.group=false"], "search.group", "sampler qmc does not take group"),
        (["search.sampler=cmaes", "search.n_startup_trials=3"], "search.n_startup_trials", "sampler cmaes does not take"),
        (["search.multivariate=false", "search.group=true"], "search.group", "expected multivariate: true"),
    ],
)
def test_search_option_the_sampler_does_not_take(tmp_path, overrides, key, fragment):
    path = _copy_spec(tmp_path)
    with pytest.raises(UserError) as info:
        load_spec(path, overrides=overrides)
    msg = str(info.value)
    assert msg.startswith(f"{path}: {key}: ") and fragment in msg and "\n" not in msg


def test_search_null_option_is_the_default(tmp_path):
    """A spec that sets TPE options can still be switched to another sampler from --set."""
    path = _copy_spec(tmp_path, lambda r: r.update(search={"sampler": "tpe", "multivariate": True, "n_startup_trials": 4}))
    assert load_spec(path).search.n_startup_trials == 4
    spec = load_spec(path, overrides=["search.sampler=random", "search.multivariate=null", "search.n_startup_trials=null"])
    assert spec.search.sampler == "random" and spec.search.multivariate is None


def test_search_block_in_the_file_and_in_smoke(tmp_path):
    path = _copy_spec(tmp_path, lambda r: (r.update(search={"sampler": "gp"}), r["smoke"].update(search={"sampler": "random"})))
    assert load_spec(path).search.sampler == "gp"
    assert load_spec(path, smoke=True).search.sampler == "random"


def test_cmaes_refuses_a_categorical_space(tmp_path):
    path = _copy_spec(tmp_path)
    with pytest.raises(UserError) as info:
        load_spec(path, overrides=["search.sampler=cmaes"])
    msg = str(info.value)
    assert msg.startswith(f"{path}: search.sampler: is cmaes") and "categorical" in msg and "ramp_shape" in msg and "\n" not in msg


def test_cmaes_refuses_a_conditional_space(tmp_path):
    space = CONTINUOUS_SPACE + "ramp_start: {type: float, low: 0.0, high: 0.5, when: {n_layers: [2, 3]}}\n"
    spec_path, space_path = _continuous(tmp_path, space=space)
    assert load_spec(spec_path, search_space_path=space_path).params[-1].when == {"n_layers": (2, 3)}
    with pytest.raises(UserError) as info:
        load_spec(spec_path, search_space_path=space_path, overrides=["search.sampler=cmaes"])
    msg = str(info.value)
    assert msg.startswith(f"{spec_path}: search.sampler: is cmaes") and "conditional" in msg and "ramp_start" in msg


def test_cmaes_on_a_continuous_space(tmp_path):
    spec_path, space_path = _continuous(tmp_path)
    spec = load_spec(spec_path, search_space_path=space_path, overrides=["search.sampler=cmaes"])
    assert spec.search.sampler == "cmaes" and spec.search.n_startup_trials is None


def test_cmaes_without_its_package(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cmaes" else real(name, *a))
    spec_path, space_path = _continuous(tmp_path)
    with pytest.raises(UserError) as info:
        load_spec(spec_path, search_space_path=space_path, overrides=["search.sampler=cmaes"])
    assert str(info.value) == f"{spec_path}: search.sampler: cmaes needs the cmaes package: pip install cmaes"


def test_metric_scale_of_every_bundled_spec(tmp_path):
    expected = {"augmentation": "ratio", "crop_size": "ratio", "film_placement": "ratio", "grunet_arch": "ratio",
                "har_lstm": "interval", "kl_cycle": "log", "mdn_ramp": "ratio", "mdn_sampling": "ratio",
                "teacher_forcing": "log"}
    assert {name: load_spec(path, check_family=False).metric_scale for name, path in known_studies().items()} == expected
    assert load_spec(_copy_spec(tmp_path, lambda r: r.pop("metric_scale"))).metric_scale == "interval"
    assert load_spec(BUNDLED_SPEC, overrides=["metric_scale=log"]).metric_scale == "log"
    sampling = load_spec(known_studies()["mdn_sampling"], check_family=False)
    assert sampling.metric_scales == ["ratio", "ratio", "interval"]
    with pytest.raises(UserError, match=r"metric_scale: is \['ratio'\], expected one of .* one per metric \(3\)"):
        load_spec(known_studies()["mdn_sampling"], check_family=False, overrides=["metric_scale=[ratio]"])
    with pytest.raises(UserError, match="metric_scale: is \\['ratio'\\], expected one of ratio, interval, log$"):
        load_spec(BUNDLED_SPEC, overrides=["metric_scale=[ratio]"])


def test_leave_one_out_forms(tmp_path):
    def with_loo(value):
        return lambda r: r["ablation"].update(leave_one_out=value)

    assert load_spec(_copy_spec(tmp_path, with_loo(None))).ablation.leave_one_out is None
    assert load_spec(_copy_spec(tmp_path, lambda r: r["ablation"].pop("leave_one_out"))).ablation.leave_one_out is None
    assert load_spec(_copy_spec(tmp_path, with_loo({}))).ablation.leave_one_out == LeaveOneOut(enabled=True, seeds=3)
    assert load_spec(_copy_spec(tmp_path, with_loo({"seeds": 5}))).ablation.leave_one_out == LeaveOneOut(True, 5)
    assert load_spec(_copy_spec(tmp_path, with_loo({"enabled": False}))).ablation.leave_one_out.enabled is False
    off = load_spec(_copy_spec(tmp_path, with_loo(None)), overrides=["ablation.leave_one_out.seeds=4"])
    assert off.ablation.leave_one_out == LeaveOneOut(enabled=True, seeds=4)   # --set turns it on
    assert load_spec(BUNDLED_SPEC, overrides=["ablation.leave_one_out=null"]).ablation.leave_one_out is None
    others = {name: load_spec(path, check_family=False).ablation.leave_one_out for name, path in known_studies().items()}
    assert {name for name, loo in others.items() if loo is not None} == {"mdn_ramp"}
    assert load_spec(BUNDLED_SPEC).ablation.leave_one_out.sweep == ["ramp_shape"]
    for bad in ("lr", "nope"):   # a numeric factor has no choices to sweep; an unknown one is not in the space
        with pytest.raises(UserError, match=rf"ablation.leave_one_out.sweep: '{bad}' is not a categorical search-space "
                                            r"parameter \(categorical: \['ramp_shape'\]\)"):
            load_spec(_copy_spec(tmp_path, with_loo({"seeds": 3, "sweep": [bad]})))


def test_numeric_baselines(tmp_path):
    spec_path, space_path = _continuous(tmp_path, baseline={"lr": 1e-3, "dropout": 0.2, "n_layers": 3, "batch_size": 48})
    spec = load_spec(spec_path, search_space_path=space_path)
    assert spec.ablation.baseline == {"lr": 1e-3, "dropout": 0.2, "n_layers": 3, "batch_size": 48}
    assert type(spec.ablation.baseline["lr"]) is float and type(spec.ablation.baseline["n_layers"]) is int
    assert spec.reference_point() == {"lr": 1e-3, "dropout": 0.2, "n_layers": 3, "batch_size": 48}


@pytest.mark.parametrize(
    "baseline, key, fragment",
    [
        ({"n_layers": 2.0}, "n_layers", "is 2.0, expected an integer in [1, 3]"),
        ({"n_layers": 2.5}, "n_layers", "expected an integer in [1, 3]"),
        ({"n_layers": 4}, "n_layers", "is 4, expected an integer in [1, 3]"),
        ({"n_layers": True}, "n_layers", "is True, expected an integer"),
        ({"batch_size": 40}, "batch_size", "is 40, expected an integer in [16, 64] on the grid 16 + k * 16"),
        ({"dropout": 0.15}, "dropout", "is 0.15, expected a number in [0.0, 0.3] on the grid 0.0 + k * 0.1"),
        ({"dropout": -0.1}, "dropout", "expected a number in [0.0, 0.3]"),
        ({"lr": 2.0e-4}, "lr", "is 0.0002, expected a number in [0.0003, 0.003]"),
        ({"lr": float("nan")}, "lr", "expected a number in"),
    ],
)
def test_bad_numeric_baselines(tmp_path, baseline, key, fragment):
    spec_path, space_path = _continuous(tmp_path, baseline=baseline)
    with pytest.raises(UserError) as info:
        load_spec(spec_path, search_space_path=space_path)
    msg = str(info.value)
    assert msg.startswith(f"{spec_path}: ablation.baseline.{key}: ") and fragment in msg and "\n" not in msg


# ---------------------------------------------------------------- reference_point

CONDITIONAL_SPACE = """\
kind:  {type: categorical, choices: [a, b, c]}
x:     {type: float, low: 0.0, high: 1.0, when: {kind: [b, c]}}
sub:   {type: categorical, choices: [p, q], when: {kind: [c]}}
y:     {type: int, low: 1, high: 5, when: {sub: [q]}}
lr:    {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
n:     {type: int, low: 2, high: 32, log: true}
w:     {type: float, low: 0.0, high: 0.35, step: 0.1}
k:     {type: int, low: 2, high: 10, step: 2}
flag:  {type: categorical, choices: [true, false]}
"""


def _spec_over(space: str, baseline: dict) -> StudySpec:
    return StudySpec(name="s", path=Path("s.yaml"), metric="loss", mode="min",
                     params=parse_search_space(yaml.safe_load(space), "space.yaml"), ablation=Ablation(baseline=baseline))


@pytest.mark.parametrize(
    "baseline, expected",
    [
        # no baseline: first choices, centres (geometric for log), on the int and step grids; x, sub, y inactive
        ({}, {"kind": "a", "lr": 1e-3, "n": 8, "w": 0.2, "k": 6, "flag": True}),
        # kind=c activates x (centre) and sub (first choice); y stays inactive under sub=p
        ({"kind": "c"}, {"kind": "c", "x": 0.5, "sub": "p", "lr": 1e-3, "n": 8, "w": 0.2, "k": 6, "flag": True}),
        ({"kind": "c", "sub": "q"}, {"kind": "c", "x": 0.5, "sub": "q", "y": 3, "lr": 1e-3, "n": 8, "w": 0.2, "k": 6, "flag": True}),
        # a baseline of an inactive parameter is left out; given values win over centres
        ({"kind": "a", "x": 0.9, "y": 5, "lr": 5e-3, "flag": False}, {"kind": "a", "lr": 5e-3, "n": 8, "w": 0.2, "k": 6, "flag": False}),
        ({"kind": "b", "x": 0.9, "n": 3}, {"kind": "b", "x": 0.9, "lr": 1e-3, "n": 3, "w": 0.2, "k": 6, "flag": True}),
    ],
)
def test_reference_point_on_a_conditional_space(baseline, expected):
    point = _spec_over(CONDITIONAL_SPACE, baseline).reference_point()
    assert list(point) == list(expected)                      # file order, inactive ones left out
    assert point == pytest.approx(expected)
    assert all(type(point[k]) is type(v) for k, v in expected.items())


def test_reference_point_is_inside_every_optuna_distribution():
    """Optuna ignores an enqueued value outside its distribution (and samples instead)."""
    for path in known_studies().values():
        spec = load_spec(path, check_family=False)
        params = {p.name: p for p in spec.params}
        for name, value in spec.reference_point().items():
            dist = params[name].distribution()
            assert dist._contains(dist.to_internal_repr(value)), (path.name, name, value)
    for baseline in ({}, {"kind": "c", "sub": "q"}):
        spec = _spec_over(CONDITIONAL_SPACE, baseline)
        for p in spec.params:
            if p.name in spec.reference_point():
                dist = p.distribution()
                assert dist._contains(dist.to_internal_repr(spec.reference_point()[p.name])), p.name


def test_bundled_reference_point():
    assert load_spec(BUNDLED_SPEC).reference_point() == {"ramp_shape": "constant", "lr": 1e-3}
    linear = load_spec(BUNDLED_SPEC, overrides=["ablation.baseline.ramp_shape=linear"]).reference_point()
    # the spec's baselines where it has them (ramp_start 0, ramp_length 0.25), the centre of the range elsewhere
    assert linear == pytest.approx({"ramp_shape": "linear", "initial_weight": (0.01 * 0.5) ** 0.5, "ramp_start": 0.0,
                                    "ramp_length": 0.25, "lr": 1e-3})


def _two_objectives(raw: dict) -> None:
    raw.update(metric=["val_mse", "gen_diversity"], mode=["min", "max"])
    raw["ablation"].pop("leave_one_out")
    raw.pop("report")   # secondary metrics: a one-metric study's (test_report_on_a_trade_off_study_is_refused_not_ignored)


def test_several_objectives(tmp_path):
    path = _copy_spec(tmp_path, _two_objectives)
    spec = load_spec(path)
    assert (spec.metrics, spec.modes, spec.multi_objective) == (["val_mse", "gen_diversity"], ["min", "max"], True)
    assert (spec.metric, spec.mode) == ("val_mse", "min")   # the first objective: what progress lines show
    single = load_spec(BUNDLED_SPEC)
    assert (single.metrics, single.modes, single.multi_objective) == (["val_mse"], ["min"], False)
    # one metric in a list is the single-objective study
    one = load_spec(_copy_spec(tmp_path, lambda r: r.update(metric=["val_mse"], mode=["min"]), name="one.yaml"))
    assert (one.metrics, one.multi_objective) == (["val_mse"], False)


@pytest.mark.parametrize(
    "metric, mode, key, fragment",
    [
        (["val_mse", "gen_diversity"], "min", "mode", "expected a list of min/max, one per metric (2)"),
        (["val_mse", "gen_diversity"], ["min"], "mode", "expected a list of min/max, one per metric (2)"),
        (["val_mse", "gen_diversity"], ["min", "up"], "mode", "expected a list of min/max"),
        ("val_mse", ["min"], "mode", "expected min or max"),
        (["val_mse", "val_mse"], ["min", "min"], "metric", "names a metric twice"),
        ([], [], "metric", "expected the name of a reported metric"),
        (["val_mse", 3], ["min", "max"], "metric", "expected the name of a reported metric"),
    ],
)
def test_bad_objectives(tmp_path, metric, mode, key, fragment):
    path = _copy_spec(tmp_path, lambda r: r.update(metric=metric, mode=mode))
    with pytest.raises(UserError) as info:
        load_spec(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: {key}: ") and fragment in msg and "\n" not in msg


def test_nsga2_and_what_several_objectives_refuse(tmp_path):
    path = _copy_spec(tmp_path, _two_objectives)
    spec = load_spec(path, overrides=["search.sampler=nsga2", "search.population_size=8"])
    assert (spec.search.sampler, spec.search.population_size) == ("nsga2", 8)
    with pytest.raises(UserError) as info:
        load_spec(path, overrides=["search.sampler=nsga2", "search.population_size=1"])
    assert str(info.value).startswith(f"{path}: search.population_size: is 1")
    with pytest.raises(UserError) as info:
        load_spec(path, overrides=["search.sampler=cmaes"])
    assert str(info.value).startswith(f"{path}: search.sampler: is cmaes") and "several objectives" in str(info.value)
    with pytest.raises(UserError) as info:
        load_spec(path, overrides=["ablation.leave_one_out.seeds=3"])
    assert str(info.value).startswith(f"{path}: ablation.leave_one_out: a study with several objectives")


# ---------------------------------------------------------------- --set config.X on a searched X; --fix

SPACE_SHOWN = "search_spaces/mdn_ramp.yaml"   # the tests run from the repository root (tests/conftest.py's REPO)


@pytest.fixture
def at_repo_root(monkeypatch):
    monkeypatch.chdir(STUDIES_DIR.parent)


@pytest.mark.parametrize("override", ["config.lr=-1", "config.lr=1e-3", "config.ramp_length=0.2", "config={lr: 0.001}"])
def test_set_config_of_a_searched_parameter_is_refused(at_repo_root, override):
    name = "ramp_length" if "ramp_length" in override else "lr"
    with pytest.raises(UserError) as info:
        load_spec(BUNDLED_SPEC, overrides=[override])
    assert str(info.value) == (f"--set {override}: {name} is searched ({SPACE_SHOWN}); pin it for this run with "
                               f"--fix {name}=VALUE, or remove it from the search space")


def test_set_config_of_a_pinned_parameter_is_refused(at_repo_root):
    with pytest.raises(UserError) as info:
        load_spec(BUNDLED_SPEC, overrides=["config.lr=1e-3"], fixed=["lr=2e-3"])
    assert str(info.value) == "--set config.lr=1e-3: lr is pinned with --fix lr=2e-3 as well; give its value once, with --fix"


def test_a_recorded_set_config_of_a_searched_parameter_still_reads():
    """A run recorded before the refusal replays as it ran: the searched value wins over the config's."""
    spec = load_spec(BUNDLED_SPEC, overrides=["config.lr=1e-3"], refuse_searched_config=False)
    assert spec.config["lr"] == 1e-3 and "lr" in [p.name for p in spec.params]


def test_fix_pins_a_parameter_for_the_run():
    spec = load_spec(BUNDLED_SPEC, fixed=["lr=3e-3"])
    assert [p.name for p in spec.params] == ["ramp_shape", "initial_weight", "ramp_start", "ramp_length"]
    assert spec.fixed == {"lr": 3e-3} and spec.config["lr"] == 3e-3 and spec.trial_config()["lr"] == 3e-3
    assert spec.ablation.factors == ["ramp_shape", "initial_weight", "ramp_start", "ramp_length"]
    assert "lr" not in spec.ablation.baseline and "lr" not in spec.reference_point()
    assert spec.to_dict()["fixed"] == {"lr": 3e-3}
    assert load_spec(BUNDLED_SPEC).fixed == {}
    # the value comes as the sampler would give it: a float for a float parameter, the choice itself for a categorical
    assert load_spec(BUNDLED_SPEC, fixed=["lr=0.001"]).config["lr"] == 1e-3
    assert type(load_spec(BUNDLED_SPEC, fixed=["lr=3e-3"]).config["lr"]) is float


def test_fix_a_conditional_parent_decides_its_children():
    linear = load_spec(BUNDLED_SPEC, fixed=["ramp_shape=linear"])
    assert [(p.name, p.when) for p in linear.params] == [("initial_weight", {}), ("ramp_start", {}), ("ramp_length", {}),
                                                         ("lr", {})]   # always active now
    assert linear.config["ramp_shape"] == "linear" and linear.ablation.leave_one_out.sweep == []
    assert "ramp_shape" not in linear.ablation.baseline and "ramp_shape" not in linear.reference_point()
    step = load_spec(BUNDLED_SPEC, fixed=["ramp_shape=step"])
    assert [p.name for p in step.params] == ["initial_weight", "ramp_start", "lr"]   # ramp_length: never active
    assert "ramp_length" not in step.ablation.factors and "ramp_length" not in step.ablation.baseline
    constant = load_spec(BUNDLED_SPEC, fixed=["ramp_shape=constant"])
    assert [p.name for p in constant.params] == ["lr"] and constant.ablation.factors == ["lr"]
    # a pinned child keeps its searched parent's condition out of the search: its value goes into every config
    child = load_spec(BUNDLED_SPEC, fixed=["ramp_length=0.2"])
    assert [p.name for p in child.params] == ["ramp_shape", "initial_weight", "ramp_start", "lr"]
    assert child.config["ramp_length"] == 0.2 and child.params[1].when == {"ramp_shape": ("step", "linear", "exponential")}


def test_fix_grandchildren_of_a_ruled_out_parent(tmp_path):
    (tmp_path / "space.yaml").write_text(CONDITIONAL_SPACE)
    loose = ["ablation.factors=[]", "ablation.baseline={}", "ablation.bins={}", "ablation.leave_one_out.sweep=[]"]

    def pinned(*fixed):
        return load_spec(BUNDLED_SPEC, check_family=False, search_space_path=tmp_path / "space.yaml", overrides=loose,
                         fixed=list(fixed))

    assert [p.name for p in pinned("kind=a").params] == ["lr", "n", "w", "k", "flag"]     # x, sub and y (under sub) out
    c = pinned("kind=c")
    assert [(p.name, p.when) for p in c.params][:3] == [("x", {}), ("sub", {}), ("y", {"sub": ("q",)})]
    assert [(p.name, p.when) for p in pinned("kind=c", "sub=q").params][:2] == [("x", {}), ("y", {})]
    with pytest.raises(UserError) as info:
        pinned("kind=a", "y=3")
    assert str(info.value) == (f"--fix y=3: y is searched only when sub is q ({tmp_path / 'space.yaml'}), which --fix "
                               "kind=a rules out; drop one of the two")
    config = pinned("w=0.3", "n=4", "flag=false").config
    assert {k: config[k] for k in ("w", "n", "flag")} == {"w": 0.3, "n": 4, "flag": False}


@pytest.mark.parametrize(
    "fixed, message",
    [
        (["lr=5"], f"--fix lr=5: is 5, expected a number in [0.0003, 0.003] (lr's declared range in {SPACE_SHOWN})"),
        (["lr=-1"], f"--fix lr=-1: is -1, expected a number in [0.0003, 0.003] (lr's declared range in {SPACE_SHOWN})"),
        (["lr=fast"], f"--fix lr=fast: is 'fast', expected a number in [0.0003, 0.003] (lr's declared range in {SPACE_SHOWN})"),
        (["lr=true"], f"--fix lr=true: is True, expected a number in [0.0003, 0.003] (lr's declared range in {SPACE_SHOWN})"),
        (["ramp_shape=cubic"], "--fix ramp_shape=cubic: is 'cubic', expected one of ['constant', 'step', 'linear', "
                               f"'exponential'] (ramp_shape's choices in {SPACE_SHOWN})"),
        (["lrate=3e-3"], f"--fix lrate=3e-3: lrate is not a parameter of the search space {SPACE_SHOWN} (known: "
                         "ramp_shape, initial_weight, ramp_start, ramp_length, lr)"),
        (["lr"], "--fix lr: expected NAME=VALUE with NAME a search-space parameter, e.g. --fix lr=3e-3"),
        (["lr="], "--fix lr=: expected NAME=VALUE with NAME a search-space parameter, e.g. --fix lr=3e-3"),
        (["lr=1e-3", "lr=2e-3"], "--fix lr=2e-3: lr is pinned twice (also --fix lr=1e-3); give it once"),
        (["ramp_shape=constant", "ramp_length=0.2"],
         f"--fix ramp_length=0.2: ramp_length is searched only when ramp_shape is linear or exponential ({SPACE_SHOWN}), "
         "which --fix ramp_shape=constant rules out; drop one of the two"),
        (["ramp_shape=constant", "lr=1e-3"],
         f"--fix ramp_shape=constant --fix lr=1e-3: leaves nothing to search in {SPACE_SHOWN}; leave at least one "
         "parameter searched"),
    ],
)
def test_bad_fix_is_one_line(at_repo_root, fixed, message):
    with pytest.raises(UserError) as info:
        load_spec(BUNDLED_SPEC, fixed=fixed)
    assert str(info.value) == message


def test_fix_int_and_categorical_values(tmp_path):
    """An int parameter takes a whole number (2.0 is 2), a categorical its choice by value
    (200 is 200.0) or by its text ("0" for a string choice)."""
    crop = load_spec(known_studies()["crop_size"], fixed=["cube_size=200", "crop_method=bbox"])
    assert crop.config["cube_size"] == 200.0 and type(crop.config["cube_size"]) is float
    assert [p.name for p in crop.params] == ["bbox_padding", "lr"]
    assert load_spec(known_studies()["film_placement"], fixed=["film_blocks=0"]).config["film_blocks"] == "0"
    assert load_spec(known_studies()["augmentation"], fixed=["aug_random=false"]).config["aug_random"] is False
    kl = load_spec(known_studies()["kl_cycle"], fixed=["kl_anneal_cycle=4.0"])
    assert kl.config["kl_anneal_cycle"] == 4 and type(kl.config["kl_anneal_cycle"]) is int
    with pytest.raises(UserError, match=r"^--fix kl_anneal_cycle=3.5: is 3.5, expected an integer in \[2, 8\]"):
        load_spec(known_studies()["kl_cycle"], fixed=["kl_anneal_cycle=3.5"])


def test_fix_values_are_checked_against_the_family(tmp_path):
    """A --fix value inside its declared range that the family refuses names --fix, not the spec's config."""
    space = _copy_space(tmp_path, lambda r: r.update(dropout={"type": "float", "low": 0.0, "high": 0.5}))
    spec = load_spec(BUNDLED_SPEC, search_space_path=space, fixed=["dropout=0.25"])
    assert spec.config["dropout"] == 0.25
    path = _copy_spec(tmp_path, lambda r: r["config"].update(n_heads=3, d_model=48))
    wide = _copy_space(tmp_path, lambda r: r.update(d_model={"type": "categorical", "choices": [48, 50]}), name="wide.yaml")
    with pytest.raises(UserError) as info:
        load_spec(path, search_space_path=wide, fixed=["d_model=50"])
    assert str(info.value) == ("--fix d_model=50: not valid for family mdn_motion: `d_model` (50) must be divisible "
                               "by `n_heads` (3)")


def test_every_bundled_parameter_can_be_pinned_at_its_edges():
    """Every bundled study: each parameter pinned at each edge (or choice) gives a valid spec, or the one
    refusal there is (nothing left to search), so no search space holds a value its family refuses."""
    for name, path in known_studies().items():
        for smoke in (False, True):
            for p in load_spec(path, smoke=smoke).params:
                for value in p.probe_values():
                    try:
                        spec = load_spec(path, smoke=smoke, fixed=[f"{p.name}={value}"])
                    except UserError as exc:
                        assert "leaves nothing to search" in str(exc), (name, p.name, value, exc)
                        continue
                    assert spec.config[p.name] == value and p.name not in [q.name for q in spec.params]


# --------------------------------------------------------------- report: secondary metrics (issue 32, item 4)

def test_report_names_secondary_metrics_and_their_directions(tmp_path):
    from studies.spec.study import Secondary

    assert load_spec(BUNDLED_SPEC).report == [Secondary("val_kp_mse", "min"), Secondary("val_emotion_mse", "min"),
                                              Secondary("val_nll", "min")]
    path = _copy_spec(tmp_path, lambda r: r.update(report=["val_kp_mse", {"metric": "gen_diversity", "mode": "max"},
                                                            {"metric": "val_nll"}]))
    assert load_spec(path).report == [Secondary("val_kp_mse", "min"), Secondary("gen_diversity", "max"),
                                      Secondary("val_nll", "min")]
    assert load_spec(_copy_spec(tmp_path, lambda r: r.pop("report"), name="none.yaml")).report == []
    assert load_spec(BUNDLED_SPEC, overrides=["report=[val_nll]"]).report == [Secondary("val_nll", "min")]


def test_report_on_a_trade_off_study_is_refused_not_ignored(tmp_path):
    """The trade-off report has no designed tables for secondary metrics: a report: key there would be ignored."""
    path = _copy_spec(tmp_path, lambda r: r.update(metric=["val_mse", "val_nll"], mode=["min", "min"],
                                                    metric_scale=["ratio", "interval"], report=["val_kp_mse"]))
    with pytest.raises(UserError) as info:
        load_spec(path, check_family=False)
    assert str(info.value) == (f"{path}: report: secondary metrics are shown by the ablation report of a study with one "
                               "metric; this study has 2 (val_mse, val_nll) and its trade-off report shows each of them: "
                               "add the metric to metric: (and mode:), or drop report:")


@pytest.mark.parametrize(
    "report, message",
    [
        ("val_kp_mse", "report: is 'val_kp_mse', expected a list of metric names, or of {metric: NAME, mode: min|max}"),
        ([3], "report[0]: is 3, expected a metric name or {metric: NAME, mode: min|max}"),
        (["val_kp_mse", ""], "report[1]: is '', expected a metric name or {metric: NAME, mode: min|max}"),
        ([{"metric": "val_acc", "mode": "up"}], "report[0].mode: is 'up', expected min or max"),
        ([{"mode": "max"}], "report[0].metric: is None, expected the name of a reported metric"),
        ([{"metric": "val_acc", "direction": "max"}], "report[0].direction: unknown key (expected metric and, "
                                                      "optionally, mode)"),
        (["val_kp_mse", "val_nll", "val_kp_mse"], "report[2]: val_kp_mse is named twice; name each metric once"),
        (["val_nll", {"metric": "val_nll", "mode": "max"}], "report[1]: val_nll is named twice; name each metric once"),
        (["val_mse"], "report[0]: val_mse is the study's metric; report: lists other metrics to show beside it"),
    ],
)
def test_bad_report_is_one_line_naming_the_file_and_key(tmp_path, report, message):
    path = _copy_spec(tmp_path, lambda r: r.update(report=report))
    with pytest.raises(UserError) as info:
        load_spec(path, check_family=False)
    assert str(info.value) == f"{path}: {message}"
    assert "\n" not in str(info.value)
