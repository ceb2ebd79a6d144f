"""Study specs (studies/NAME.yaml): read, override, validate — before Ray starts.

A spec is data (as in Syne Tune's benchmark definitions): which family or
trainable, the metric and its direction, the budget ASHA works in, resources,
the fixed config every trial gets, the ablation factors and baseline, and a
``smoke`` block merged over all of it by ``--smoke``.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic.dataclasses import dataclass as schema_dataclass

from core.config import ConfigError, config_from_dict
from core.experiments.registry import FamilyDef, family_names, get_family
from studies.errors import UserError
from studies.spec.param import Param
from studies.spec.schema import SECTION, Bool, Finite, Int, Str, validate_section
from studies.spec.search_space import load_search_space
from studies.spec.yaml_io import load_yaml, read_yaml_mapping

STUDIES_DIR = Path(__file__).resolve().parents[1]

# Seeds (the spec's ``seed`` and ``search.seed``) are below this. numpy's legacy seeding, Optuna's samplers
# and scikit-learn's forests take seeds below 2**32, and the study derives further seeds from these by
# adding offsets (the designed stage's ``seed + 1000 + i``, the report's ``seed + 104729``, ...): half
# the range is left for them.
SEED_LIMIT = 2**31
SEARCH_SPACES_DIR = STUDIES_DIR.parent / "search_spaces"


# The sections of a spec, declared (studies/spec/schema.py validates them and words the errors).

@schema_dataclass(config=SECTION)
class Budget:
    max_epochs: Int = 20
    grace_period: Int = 2
    reduction_factor: Finite = 3.0
    num_samples: Int = 20
    checkpoint_every: Int = 5
    max_failures: Int = 2
    report_timeout_s: Finite = 0.0   # 0: automatic (studies/tune/stall_guard.py)


PRECISIONS = ("fp32", "bf16")


@schema_dataclass(config=SECTION)
class Resources:
    cpus_per_trial: Finite = 1.0
    gpus_per_trial: Finite = 0.0
    max_concurrent: Int = 0  # 0: as many as the resources allow
    precision: Str = "fp32"  # bf16: each trial's epochs under torch.autocast(bfloat16) on its device


@schema_dataclass(config=SECTION)
class Confirm:
    enabled: Bool = False
    top_k: Int = 3
    seeds: Int = 3


@schema_dataclass(config=SECTION)
class LeaveOneOut:
    enabled: Bool = True
    seeds: Int = 3
    # categorical factors whose every other choice is also run from the best config (all their levels compared
    # at the full budget, not only the baseline)
    sweep: list[Str] = field(default_factory=list)


@schema_dataclass(config=SECTION)
class Ablation:
    factors: list[Any] = field(default_factory=list)      # names, checked against the search space
    baseline: dict[str, Any] = field(default_factory=dict)
    bins: dict[str, Any] = field(default_factory=dict)
    confirm: Confirm = field(default_factory=Confirm)
    leave_one_out: LeaveOneOut | None = None  # None: off (absent or null in the spec)


SAMPLERS = ("tpe", "random", "qmc", "gp", "cmaes", "nsga2")
# The spec's search options each sampler takes (besides `sampler` itself).
SAMPLER_OPTIONS = {"tpe": ("seed", "n_startup_trials", "multivariate", "group"), "random": ("seed",),
                   "qmc": ("seed",), "gp": ("seed", "n_startup_trials"), "cmaes": ("seed",),
                   "nsga2": ("seed", "population_size")}
METRIC_SCALES = ("ratio", "interval", "log")


STARTUPS = ("design", "random")
# Why a design by default (README, "search.startup"; benchmarks/search_quality.py --known-truth): the same
# picked loss within noise, better modelled tables, and designed screening evidence for the global questions.
STARTUP_DEFAULT = "design"


@dataclass
class Search:
    """The Optuna sampler that proposes configs. Filled in by load_spec: ``seed``
    defaults to the spec's seed, ``n_startup_trials`` (tpe, gp; None for the
    others) to default_startup(num_samples); ``multivariate`` None leaves
    Optuna's own default.

    ``startup`` (tpe, gp; None for the others): how the sampler's first trials
    after the reference point are chosen. ``random``: ``n_startup_trials``
    random ones, as Optuna does. ``design``: a balanced screening design
    (studies/spec/screening_design.py) of ``design_trials`` rows (None: its
    ``design_size``), enqueued as Optuna trials 1..N, after which the sampler
    takes over (its n_startup_trials is 1 + N; ``n_startup_trials`` is then
    unused). The report reads those trials as designed screening evidence
    (studies/report/screening.py). Default: ``STARTUP_DEFAULT``, unless
    ``n_startup_trials`` is given, which asks for a random start of that
    length (as before the design existed)."""

    sampler: str = "tpe"
    seed: int = 0
    n_startup_trials: int | None = None
    multivariate: bool | None = None
    group: bool = False
    population_size: int | None = None   # nsga2 only; None: Optuna's default (50)
    startup: str | None = None           # tpe, gp: "design" or "random"
    design_trials: int | None = None     # startup: design only; None: design_size(...)


@dataclass(frozen=True)
class Secondary:
    """A metric the designed tables and the answer show beside the study's own
    (``report:`` in the spec): its name and which direction is better."""

    metric: str
    mode: str


@dataclass
class StudySpec:
    name: str
    path: Path
    metric: str
    mode: str
    family: str | None = None
    trainable: str | None = None
    description: str = ""
    search_space: str = ""
    seed: int = 0
    budget: Budget = field(default_factory=Budget)
    resources: Resources = field(default_factory=Resources)
    config: dict[str, Any] = field(default_factory=dict)
    ablation: Ablation = field(default_factory=Ablation)
    search: Search = field(default_factory=Search)
    metric_scale: str = "interval"
    params: list[Param] = field(default_factory=list)
    search_space_path: Path | None = None
    # Every objective, in the spec's order; ``metric``/``mode`` are the first of them,
    # the one a single-objective study has (and the one progress lines show).
    metrics: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    metric_scales: list[str] = field(default_factory=list)   # one per objective; metric_scale is the first
    # Parameters pinned for this run (--fix NAME=VALUE): out of ``params``, their values in ``config``.
    fixed: dict[str, Any] = field(default_factory=dict)
    # ``report:``: secondary metrics (components of the study metric, say) shown beside it in the designed
    # tables and the answer; never optimised.
    report: list[Secondary] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.metrics = self.metrics or [self.metric]
        self.modes = self.modes or [self.mode]
        self.metric_scales = self.metric_scales or [self.metric_scale] * len(self.metrics)

    @property
    def multi_objective(self) -> bool:
        return len(self.metrics) > 1

    @property
    def family_info(self) -> FamilyDef | None:
        """The family's definition (imports its module: torch and the model code)."""
        return get_family(self.family) if self.family else None

    def trial_config(self) -> dict[str, Any]:
        """The fixed part of every trial's config (Tune's param_space)."""
        return {**self.config, "max_epochs": self.budget.max_epochs, "seed": self.seed,
                "checkpoint_every": self.budget.checkpoint_every,
                "cpus_per_trial": self.resources.cpus_per_trial, "precision": self.resources.precision}

    def reference_point(self) -> dict[str, Any]:
        """The config the search measures first (Optuna trial 0): per active
        parameter, in file order, its baseline, else its first choice, else the
        centre of its range. Inactive parameters are left out."""
        point: dict[str, Any] = {}
        for p in self.params:
            if p.active(point):
                point[p.name] = self.ablation.baseline[p.name] if p.name in self.ablation.baseline else _centre(p)
        return point

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["path"], out["search_space_path"] = str(self.path), str(self.search_space_path)
        out["params"] = [dataclasses.asdict(p) for p in self.params]
        return out


_TOP_KEYS = {"family", "trainable", "description", "metric", "mode", "metric_scale", "search_space", "seed",
             "budget", "resources", "config", "ablation", "search", "report", "smoke"}


def _centre(p: Param) -> Any:
    """A categorical's first choice; a range's (geometric, for log) centre, on its int / step grid."""
    if p.type == "categorical":
        return p.choices[0]
    assert p.low is not None and p.high is not None   # a numeric parameter always has a range (search_space)
    mid = math.sqrt(p.low * p.high) if p.log else (p.low + p.high) / 2
    if p.step is not None:
        mid = p.low + round((mid - p.low) / p.step) * p.step  # stays <= high, as step <= high - low
    if p.type == "int":
        return round(mid)
    return float(f"{mid:.12g}")  # 0.15, not 0.15000000000000002


def known_studies() -> dict[str, Path]:
    return {p.stem: p for p in sorted(STUDIES_DIR.glob("*.yaml"))}


def resolve_study_path(name_or_path: str) -> Path:
    """``mdn_ramp`` -> studies/mdn_ramp.yaml; a path to a YAML file is taken as is."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise UserError(f"{candidate}: no such study spec file")
        return candidate.resolve()
    studies = known_studies()
    if name_or_path not in studies:
        raise UserError(f"unknown study {name_or_path!r}; known studies: {', '.join(studies) or '(none)'} (or give a path to a spec .yaml)")
    return studies[name_or_path]


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``budget.num_samples=8`` -> (["budget", "num_samples"], 8); values parse as YAML scalars."""
    import yaml

    if "=" not in text:
        raise UserError(f"--set {text!r}: expected key=value, e.g. --set budget.num_samples=8 or --set config.lr=0.001")
    key, _, raw = text.partition("=")
    parts = key.strip().split(".")
    if not all(p.isidentifier() for p in parts):
        raise UserError(f"--set {text!r}: {key!r} is not a dotted key like config.lr")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def _apply_override(raw: dict[str, Any], parts: list[str], value: Any, text: str) -> None:
    if parts[0] not in _TOP_KEYS - {"smoke"}:
        raise UserError(f"--set {text}: unknown key {parts[0]!r} (expected one of {sorted(_TOP_KEYS - {'smoke'})})")
    node = raw
    for p in parts[:-1]:
        if node.get(p) is None:  # absent, or present but empty (`resources:` with nothing under it)
            node[p] = {}
        node = node[p]
        if not isinstance(node, dict):
            raise UserError(f"--set {text}: {p!r} is not a section")
    node[parts[-1]] = value


def _shown(path: Path | None) -> str:
    """A path as an error shows it: relative to the current folder when under it."""
    if path is None:
        return "the search space"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def parse_fix(text: str) -> tuple[str, Any]:
    """``lr=3e-3`` -> ("lr", 0.003): a ``--fix NAME=VALUE``, its value read as a YAML scalar (as --set's are)."""
    import yaml

    name, sep, raw = text.partition("=")
    if not sep or not name.strip().isidentifier() or not raw.strip():
        raise UserError(f"--fix {text}: expected NAME=VALUE with NAME a search-space parameter, e.g. --fix lr=3e-3")
    try:
        value = load_yaml(raw)
    except yaml.YAMLError:
        value = raw
    return name.strip(), value


def fixed_values(texts: Sequence[str]) -> dict[str, Any]:
    """The ``--fix`` values by name (parsed, not yet checked against a search space): what --resume compares."""
    return dict(parse_fix(text) for text in texts)


def check_fixed_unchanged(given: Sequence[str], recorded: Sequence[str], run: str, flag: str) -> None:
    """An existing run keeps the ``--fix`` values it was started with (run.json's
    ``invocation.fixed``, applied again whenever its spec is read): ``given`` may
    repeat them (all or some), not change or add to them (its trials so far were
    searched without that)."""
    was = fixed_values(recorded)
    if any(name not in was or not _same_value(was[name], value) for name, value in fixed_values(given).items()):
        started = "--fix " + " --fix ".join(recorded) if recorded else "nothing pinned (no --fix)"
        raise UserError(f"--fix {' --fix '.join(given)}: run {run} was started with {started}; {flag} keeps those "
                        "(drop --fix, or start a new run)")


def _same_value(a: Any, b: Any) -> bool:
    """Equal as a search-space value: numbers by value (200 is 200.0), anything else (a boolean) by type too."""
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return a == b
    return type(a) is type(b) and a == b


def _fixed_value(p: Param, value: Any, text: str, space: str) -> Any:
    """A ``--fix`` value checked against its parameter's declared domain; returned as the sampler would give it."""
    raw = text.partition("=")[2].strip()
    if p.type == "categorical":
        match = [c for c in p.choices if _same_value(c, value)] or [c for c in p.choices if isinstance(c, str) and c == raw]
        if not match:
            raise UserError(f"--fix {text}: is {value!r}, expected one of {list(p.choices)} ({p.name}'s choices in {space})")
        return match[0]
    assert p.low is not None and p.high is not None   # a numeric parameter always has a range (search_space)
    integer = p.type == "int"
    number = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
              and (not integer or float(value).is_integer()))
    if not number or not p.low <= value <= p.high:
        kind = "an integer" if integer else "a number"
        raise UserError(f"--fix {text}: is {value!r}, expected {kind} in [{p.low:g}, {p.high:g}] ({p.name}'s declared "
                        f"range in {space})")
    return int(value) if integer else float(value)


def _apply_fixed(spec: StudySpec, texts: Sequence[str]) -> None:
    """``--fix NAME=VALUE``: NAME leaves the search and VALUE goes into every trial's config.
    A pinned parameter decides its dependants: a condition it meets is dropped from their
    ``when``, one it fails makes them inactive in every trial (out of the search, as the
    ones they in turn decide). Pinning a parameter whose condition then never holds is an error.
    The ablation forgets what is no longer searched."""
    space = _shown(spec.search_space_path)
    params = {p.name: p for p in spec.params}
    pinned: dict[str, Any] = {}
    given: dict[str, str] = {}
    for text in texts:
        name, value = parse_fix(text)
        if name in given:
            raise UserError(f"--fix {text}: {name} is pinned twice (also --fix {given[name]}); give it once")
        if name not in params:
            raise UserError(f"--fix {text}: {name} is not a parameter of the search space {space} "
                            f"(known: {', '.join(params)})")
        pinned[name], given[name] = _fixed_value(params[name], value, text, space), text
    kept: list[Param] = []
    inactive: dict[str, str] = {}   # never active now -> the --fix that rules it out
    for p in spec.params:
        when: dict[str, tuple[Any, ...]] = {}
        ruled_out: tuple[str, tuple[Any, ...], str] | None = None
        for dep, allowed in p.when.items():
            if dep in pinned and pinned[dep] not in allowed:
                ruled_out = ruled_out or (dep, allowed, given[dep])
            elif dep in inactive:
                ruled_out = ruled_out or (dep, allowed, inactive[dep])
            elif dep not in pinned:
                when[dep] = allowed
        if ruled_out is not None:
            dep, allowed, why = ruled_out
            if p.name in pinned:
                values = " or ".join(str(a) for a in allowed)
                raise UserError(f"--fix {given[p.name]}: {p.name} is searched only when {dep} is {values} ({space}), "
                                f"which --fix {why} rules out; drop one of the two")
            inactive[p.name] = why
        elif p.name not in pinned:
            kept.append(dataclasses.replace(p, when=when))
    if not kept:
        raise UserError(f"--fix {' --fix '.join(texts)}: leaves nothing to search in {space}; leave at least one "
                        "parameter searched")
    spec.params, spec.fixed = kept, pinned
    spec.config = {**spec.config, **pinned}
    gone = set(pinned) | set(inactive)
    a = spec.ablation
    a.factors = [f for f in a.factors if not (isinstance(f, str) and f in gone)]
    a.baseline = {k: v for k, v in a.baseline.items() if k not in gone}
    a.bins = {k: v for k, v in a.bins.items() if k not in gone}
    if a.leave_one_out is not None:
        a.leave_one_out.sweep = [n for n in a.leave_one_out.sweep if n not in gone]


def _refuse_searched_config(spec: StudySpec, overrides: Sequence[str], fixed: Sequence[str]) -> None:
    """``--set config.X`` for a searched X would be silently replaced by the searched
    value in every trial: refused, naming ``--fix`` (the way to pin X for one run)."""
    searched = {p.name for p in spec.params}
    pins = {parse_fix(text)[0]: text for text in fixed}
    for text in overrides:
        parts, value = parse_override(text)
        if parts[0] != "config":
            continue
        names = parts[1:2] if len(parts) > 1 else (list(value) if isinstance(value, dict) else [])
        for name in names:
            if name in pins:
                raise UserError(f"--set {text}: {name} is pinned with --fix {pins[name]} as well; give its value once, "
                                "with --fix")
            if name in searched:
                raise UserError(f"--set {text}: {name} is searched ({_shown(spec.search_space_path)}); pin it for this "
                                f"run with --fix {name}=VALUE, or remove it from the search space")


def _check_budget(source: str, b: Budget) -> None:
    checks = [
        ("max_epochs", 1 <= b.max_epochs <= 100_000, "1 <= max_epochs <= 100000"), ("grace_period", 1 <= b.grace_period <= b.max_epochs, f"1 <= grace_period <= max_epochs ({b.max_epochs})"),
        ("reduction_factor", b.reduction_factor >= 2, ">= 2"), ("num_samples", 1 <= b.num_samples <= 100_000, "1 <= num_samples <= 100000"),
        ("checkpoint_every", b.checkpoint_every >= 1, ">= 1"), ("max_failures", 0 <= b.max_failures <= 100, "0 <= max_failures <= 100"),
        ("report_timeout_s", b.report_timeout_s >= 0, ">= 0 (0: automatic)"),
    ]
    for key, ok, expected in checks:
        if not ok:
            raise UserError(f"{source}: budget.{key}: is {getattr(b, key)}, expected {expected}")


def _check_resources(source: str, r: Resources) -> None:
    if not 0 < r.cpus_per_trial <= 1024:
        raise UserError(f"{source}: resources.cpus_per_trial: is {r.cpus_per_trial}, expected 0 < cpus_per_trial <= 1024")
    if not 0 <= r.gpus_per_trial <= 64 or (r.gpus_per_trial > 1 and r.gpus_per_trial != int(r.gpus_per_trial)):
        raise UserError(f"{source}: resources.gpus_per_trial: is {r.gpus_per_trial}, expected a fraction in [0, 1] or a whole number of GPUs")
    if r.max_concurrent < 0:
        raise UserError(f"{source}: resources.max_concurrent: is {r.max_concurrent}, expected >= 0 (0 = from resources)")
    if r.precision not in PRECISIONS:
        raise UserError(f"{source}: resources.precision: is {r.precision!r}, expected one of {', '.join(PRECISIONS)}")


def default_startup(num_samples: int) -> int:
    """Random trials before TPE/GP take over: 10, or a quarter of the study if
    that is more. Why a quarter: the modelled tables and fANOVA can only see
    the parts of the declared space that were sampled, and TPE samples little
    outside its favourite region (benchmarks/analysis_truth.py: on 180 trials,
    45 random ones instead of 10 raised the modelled spread of the strong
    factors from 0.54 to 0.72 of the truth; the best config found was no worse)."""
    return min(num_samples, max(10, math.ceil(num_samples / 4)))


def _parse_search(source: str, raw: Any, *, seed: int, num_samples: int) -> Search:
    if raw is not None and not isinstance(raw, dict):
        raise UserError(f"{source}: search: expected a mapping like {{sampler: tpe}}, found {raw!r}")
    given = {k: v for k, v in (raw or {}).items() if v is not None}  # null: the default (lets --set undo a key)
    sampler = given.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise UserError(f"{source}: search.sampler: is {sampler!r}, expected one of {', '.join(SAMPLERS)}")
    known = [f.name for f in dataclasses.fields(Search)]
    takes = (*SAMPLER_OPTIONS[sampler], *(("startup", "design_trials") if sampler in ("tpe", "gp") else ()))
    for key in given:
        if key not in known:
            raise UserError(f"{source}: search.{key}: unknown key (expected one of {known})")
        if key != "sampler" and key not in takes:
            raise UserError(f"{source}: search.{key}: sampler {sampler} does not take {key} "
                            f"(it takes: {', '.join(takes)})")
    for key in ("seed", "n_startup_trials", "population_size", "design_trials"):
        v = given.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise UserError(f"{source}: search.{key}: is {v!r}, expected an integer >= 0")
    if given.get("seed") is not None and given["seed"] >= SEED_LIMIT:
        raise UserError(f"{source}: search.seed: is {given['seed']}, expected an integer below 2**31 ({SEED_LIMIT}; "
                        "seeds derived from it must stay below numpy's 2**32)")
    for key in ("multivariate", "group"):
        v = given.get(key)
        if v is not None and not isinstance(v, bool):
            raise UserError(f"{source}: search.{key}: is {v!r}, expected true or false")
    if given.get("group") and given.get("multivariate") is not True:
        raise UserError(f"{source}: search.group: is true, expected multivariate: true as well (TPE groups only multivariate sampling)")
    startup = given.get("n_startup_trials", default_startup(num_samples)) if sampler in ("tpe", "gp") else None
    if given.get("population_size") is not None and given["population_size"] < 2:
        raise UserError(f"{source}: search.population_size: is {given['population_size']}, expected an integer >= 2")
    start = None
    if sampler in ("tpe", "gp"):
        start = given.get("startup", "random" if "n_startup_trials" in given else STARTUP_DEFAULT)
        if start not in STARTUPS:
            raise UserError(f"{source}: search.startup: is {start!r}, expected one of {', '.join(STARTUPS)}")
        if start == "design" and "n_startup_trials" in given:
            raise UserError(f"{source}: search.n_startup_trials: is {given['n_startup_trials']}, expected no "
                            "n_startup_trials with startup: design (the design's size decides when the sampler "
                            "takes over; set search.design_trials to change it)")
        if start == "random" and "design_trials" in given:
            raise UserError(f"{source}: search.design_trials: is {given['design_trials']}, expected it only with "
                            "startup: design")
        if given.get("design_trials") is not None and not 1 <= given["design_trials"] < num_samples:
            raise UserError(f"{source}: search.design_trials: is {given['design_trials']}, expected 1 <= design_trials "
                            f"< num_samples ({num_samples}): trial 0 is the reference point")
    return Search(sampler=sampler, seed=given.get("seed", seed), n_startup_trials=startup,
                  multivariate=given.get("multivariate"), group=given.get("group", False),
                  population_size=given.get("population_size"), startup=start,
                  design_trials=given.get("design_trials"))


def _check_search(spec: StudySpec) -> None:
    if spec.search.sampler == "cmaes" and spec.multi_objective:
        raise UserError(f"{spec.path}: search.sampler: is cmaes, expected a sampler that handles several objectives "
                        f"({', '.join(spec.metrics)}): tpe, nsga2, gp, qmc or random")
    if spec.search.sampler != "cmaes":
        return
    if importlib.util.find_spec("cmaes") is None:
        raise UserError(f"{spec.path}: search.sampler: cmaes needs the cmaes package: pip install cmaes")
    for p in spec.params:
        if p.type == "categorical" or p.when:
            what = "categorical" if p.type == "categorical" else "conditional (when)"
            raise UserError(f"{spec.path}: search.sampler: is cmaes, expected a sampler that handles {what} parameters such as {p.name} "
                            f"(CMA-ES samples only a fixed continuous space; use tpe, gp, qmc or random)")


def _check_numeric_baseline(source: str, p: Param, value: Any) -> Any:
    """A baseline for a float / int parameter: a number in [low, high], on its step grid; returned as a number."""
    assert p.low is not None and p.high is not None   # a numeric parameter always has a range (search_space)
    integer = p.type == "int"
    kind = "an integer" if integer else "a number"
    grid = f" on the grid {p.low} + k * {p.step}" if p.step is not None else ""
    ok = (not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
          and math.isfinite(value) and p.low <= value <= p.high)
    if ok and p.step is not None:
        k = (value - p.low) / p.step
        ok = abs(k - round(k)) < 1e-8
    if not ok:
        raise UserError(f"{source}: ablation.baseline.{p.name}: is {value!r}, expected {kind} in [{p.low}, {p.high}]{grid}")
    return value if integer else float(value)


def _check_family_values(spec: StudySpec) -> None:
    """Every fixed value (the spec's config and the --fix values, an error naming a
    pinned field blamed on its --fix) and every edge of every parameter must build a
    valid config."""
    base = {**spec.config, "max_epochs": spec.budget.max_epochs, "seed": spec.seed}
    try:
        family = spec.family_info
    except (ImportError, AttributeError) as exc:
        raise UserError(f"{spec.path}: family: {spec.family} cannot be loaded ({exc.__class__.__name__}: {exc})") from None
    assert family is not None
    try:
        config: Any = config_from_dict(family.config_cls, base)
    except ConfigError as exc:
        named = [f"{k}={v}" for k, v in spec.fixed.items() if f"`{k}`" in str(exc)]   # a ConfigError names its fields
        if named:
            raise UserError(f"--fix {' --fix '.join(named)}: not valid for family {family.name}: {exc}") from None
        raise UserError(f"{spec.path}: config: {exc}") from None
    _check_family_metrics(spec, family, config)
    fields = {f.name for f in dataclasses.fields(family.config_cls)}
    for p in spec.params:
        if p.name not in fields:
            raise UserError(f"{spec.search_space_path}: {p.name}: not a parameter of family {family.name} (known: {sorted(fields)})")
        if p.name in family.data_fields:
            raise UserError(f"{spec.search_space_path}: {p.name}: a data field of family {family.name} (the data set is "
                            "built once, before the trials, so searching it would change nothing); set it in config: instead")
        if p.name in family.shared_fields:
            raise UserError(f"{spec.search_space_path}: {p.name}: a field of what family {family.name}'s trials share "
                            "(built once, before the trials, so searching it would change nothing); set it in config: instead")
        for value in p.probe_values():
            try:
                config_from_dict(family.config_cls, {**base, p.name: value})
            except ConfigError as exc:
                raise UserError(f"{spec.search_space_path}: {p.name}: value {value!r} is not valid for family {family.name}: {exc}") from None


def _check_family_metrics(spec: StudySpec, family: FamilyDef, config: Any) -> None:
    """The study's metrics and ``report:`` metrics must be ones the family reports with
    this config (``FamilyDef.metrics``, where the family declares them; a family that
    does not is checked when its trials report, as a user's trainable is)."""
    declared = getattr(family, "metrics", None)
    if declared is None:
        return
    reported = list(declared(config)) if callable(declared) else list(declared)
    wanted = [("metric", m) for m in spec.metrics] + [(f"report[{i}]", s.metric) for i, s in enumerate(spec.report)]
    for key, name in wanted:
        if name not in reported:
            raise UserError(f"{spec.path}: {key}: {name!r} is not a metric family {family.name} reports with this "
                            f"config (it reports: {', '.join(reported)})")


def _check_ablation(spec: StudySpec) -> None:
    names = {p.name: p for p in spec.params}
    a = spec.ablation
    for f in a.factors:
        if f not in names:
            raise UserError(f"{spec.path}: ablation.factors: {f!r} is not a search-space parameter (known: {sorted(names)})")
    for key, value in a.baseline.items():
        if key not in names:
            raise UserError(f"{spec.path}: ablation.baseline.{key}: not a search-space parameter (known: {sorted(names)})")
        p = names[key]
        if p.type == "categorical" and value not in p.choices:
            raise UserError(f"{spec.path}: ablation.baseline.{key}: {value!r} is not one of {list(p.choices)}")
        if p.type != "categorical":
            a.baseline[key] = _check_numeric_baseline(str(spec.path), p, value)
    for key, edges in a.bins.items():
        if key not in names or names[key].type == "categorical":
            raise UserError(f"{spec.path}: ablation.bins.{key}: must name a numeric search-space parameter")
        numbers = isinstance(edges, list) and all(isinstance(e, (int, float)) and not isinstance(e, bool)
                                                  and math.isfinite(e) for e in edges)
        if not numbers or len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
            raise UserError(f"{spec.path}: ablation.bins.{key}: expected an increasing list of at least 2 numbers, found {edges!r}")
    if a.confirm.top_k < 1 or a.confirm.seeds < 1:
        raise UserError(f"{spec.path}: ablation.confirm: top_k and seeds must be >= 1")
    if spec.multi_objective and a.leave_one_out is not None and a.leave_one_out.enabled:
        raise UserError(f"{spec.path}: ablation.leave_one_out: a study with several objectives has no single best config "
                        "to leave one factor out of; its front is confirmed over seeds instead (ablation.confirm)")
    if a.leave_one_out is not None and a.leave_one_out.seeds < 1:
        raise UserError(f"{spec.path}: ablation.leave_one_out.seeds: is {a.leave_one_out.seeds}, expected >= 1")
    for name in (a.leave_one_out.sweep if a.leave_one_out is not None else []):
        if name not in names or names[name].type != "categorical":
            categorical = sorted(p.name for p in spec.params if p.type == "categorical")
            raise UserError(f"{spec.path}: ablation.leave_one_out.sweep: {name!r} is not a categorical search-space "
                            f"parameter (categorical: {categorical})")


def _read_merged(path: Path, smoke: bool, overrides: Sequence[str]) -> dict[str, Any]:
    """The spec file as a mapping, with its ``smoke:`` block (when asked) and the
    ``--set`` overrides merged in, in that order."""
    raw = read_yaml_mapping(path)
    source = str(path)
    odd = [k for k in raw if not isinstance(k, str)]
    if odd:
        raise UserError(f"{source}: {odd[0]!r}: a top-level key must be a name (expected one of {sorted(_TOP_KEYS)})")
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise UserError(f"{source}: {unknown[0]}: unknown key (expected one of {sorted(_TOP_KEYS)})")
    for section in ("budget", "resources", "config", "ablation", "search"):
        if raw.get(section) is not None and not isinstance(raw[section], dict):
            raise UserError(f"{source}: {section}: expected a mapping, found {raw[section]!r}")
    if smoke:
        smoke_block = raw.get("smoke") or {}
        if not isinstance(smoke_block, dict):
            raise UserError(f"{source}: smoke: expected a mapping of overrides")
        raw = deep_merge(raw, smoke_block)
    for text in overrides:
        parts, value = parse_override(text)
        _apply_override(raw, parts, value, text)
    raw.pop("smoke", None)
    return raw


def _check_what_runs(source: str, raw: dict[str, Any]) -> None:
    """family or trainable, metric, mode, seed, config: the keys every spec needs."""
    if bool(raw.get("family")) == bool(raw.get("trainable")):
        raise UserError(f"{source}: family: give exactly one of `family` ({', '.join(family_names())}) or `trainable` (module:function)")
    family = raw.get("family")
    if family is not None and family not in family_names():
        raise UserError(f"{source}: family: unknown family {family!r} (known: {', '.join(family_names())})")
    trainable = raw.get("trainable")
    if trainable is not None and (not isinstance(trainable, str) or trainable.count(":") != 1):
        raise UserError(f"{source}: trainable: expected 'package.module:function', found {trainable!r}")
    metrics, _ = objectives(source, raw.get("metric"), raw.get("mode"))
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise UserError(f"{source}: seed: expected a non-negative integer below 2**31 ({SEED_LIMIT}; "
                        f"seeds derived from it must stay below numpy's 2**32), found {seed!r}")
    if not isinstance(raw.get("config") or {}, dict):
        raise UserError(f"{source}: config: expected a mapping of fixed trial settings")
    _check_finite(source, "config", raw.get("config") or {})
    metric_scales(source, raw.get("metric_scale", "interval"), metrics)


def _check_finite(source: str, where: str, value: Any) -> None:
    """No NaN or infinity anywhere in a config value (a trial cannot train on one, and
    a family's range checks do not see it: every comparison with NaN is false)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{source}: {where}: is {value!r}, expected a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(source, f"{where}.{key}", item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_finite(source, f"{where}[{i}]", item)


def metric_scales(source: str, given: Any, metrics: list[str]) -> list[str]:
    """One scale for every objective, or (several objectives) a list, one per metric."""
    scales = given if isinstance(given, list) and len(metrics) > 1 else [given] * len(metrics)
    if len(scales) != len(metrics) or any(not isinstance(x, str) or x not in METRIC_SCALES for x in scales):
        each = f"; or a list of them, one per metric ({len(metrics)})" if len(metrics) > 1 else ""
        raise UserError(f"{source}: metric_scale: is {given!r}, expected one of {', '.join(METRIC_SCALES)}{each}")
    return scales


def objectives(source: str, metric: Any, mode: Any) -> tuple[list[str], list[str]]:
    """``metric: val_mse`` / ``mode: min``, or several objectives: ``metric: [a, b]``
    with ``mode: [min, max]`` (one direction per metric, in the same order)."""
    metrics = metric if isinstance(metric, list) else [metric]
    if not metrics or not all(isinstance(m, str) and m for m in metrics):
        raise UserError(f"{source}: metric: expected the name of a reported metric, e.g. val_mse, "
                        f"or a list of names for several objectives, found {metric!r}")
    if len(set(metrics)) < len(metrics):
        raise UserError(f"{source}: metric: {metric!r} names a metric twice")
    if isinstance(metric, list) != isinstance(mode, list):
        what = f"a list of min/max, one per metric ({len(metrics)})" if isinstance(metric, list) else "min or max"
        raise UserError(f"{source}: mode: expected {what}, found {mode!r}")
    modes = mode if isinstance(mode, list) else [mode]
    if len(modes) != len(metrics) or any(m not in ("min", "max") for m in modes):
        what = f"a list of min/max, one per metric ({len(metrics)})" if isinstance(metric, list) else "min or max"
        raise UserError(f"{source}: mode: expected {what}, found {mode!r}")
    return metrics, modes


REPORT_FORM = "a list of metric names, or of {metric: NAME, mode: min|max}"


def report_metrics(source: str, raw: Any, metrics: list[str], modes: list[str]) -> list[Secondary]:
    """``report: [val_kp_mse, {metric: val_acc, mode: max}]``: secondary metrics
    for the designed tables and the answer. A bare name takes the study's mode
    (its first objective's); none may be a study metric or be named twice."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise UserError(f"{source}: report: is {raw!r}, expected {REPORT_FORM}")
    if len(metrics) > 1 and raw:
        raise UserError(f"{source}: report: secondary metrics are shown by the ablation report of a study with one "
                        f"metric; this study has {len(metrics)} ({', '.join(metrics)}) and its trade-off report "
                        "shows each of them: add the metric to metric: (and mode:), or drop report:")
    out: list[Secondary] = []
    for i, item in enumerate(raw):
        where = f"{source}: report[{i}]"
        if isinstance(item, dict):
            unknown = sorted(str(k) for k in item if k not in ("metric", "mode"))
            if unknown:
                raise UserError(f"{where}.{unknown[0]}: unknown key (expected metric and, optionally, mode)")
            name, mode = item.get("metric"), item.get("mode", modes[0])
            if not isinstance(name, str) or not name:
                raise UserError(f"{where}.metric: is {name!r}, expected the name of a reported metric")
            if mode not in ("min", "max"):
                raise UserError(f"{where}.mode: is {mode!r}, expected min or max")
        elif isinstance(item, str) and item:
            name, mode = item, modes[0]
        else:
            raise UserError(f"{where}: is {item!r}, expected a metric name or {{metric: NAME, mode: min|max}}")
        if name in metrics:
            raise UserError(f"{where}: {name} is the study's metric; report: lists other metrics to show beside it")
        if any(s.metric == name for s in out):
            raise UserError(f"{where}: {name} is named twice; name each metric once")
        out.append(Secondary(name, mode))
    return out


def report_of_run(spec_copy: Path, *, smoke: bool, overrides: Sequence[str], mode: str) -> list[Secondary]:
    """A run's ``report:`` metrics from its spec copy (smoke block and overrides
    merged in as the run had them), without reading its search space or family."""
    raw = _read_merged(spec_copy, smoke, overrides)
    metrics, modes = objectives(str(spec_copy), raw.get("metric"), raw.get("mode", mode))
    return report_metrics(str(spec_copy), raw.get("report"), metrics, modes)


def _parse_ablation(source: str, raw: Any) -> Ablation:
    """The ablation section; its two sub-sections are validated on their own, so an
    error names ablation.confirm or ablation.leave_one_out."""
    ablation_raw = raw or {}
    if not isinstance(ablation_raw, dict):
        raise UserError(f"{source}: ablation: expected a mapping")
    confirm = validate_section(Confirm, ablation_raw.get("confirm"), source=source, where="ablation.confirm")
    loo_raw = ablation_raw.get("leave_one_out")
    loo = None if loo_raw is None else validate_section(LeaveOneOut, loo_raw, source=source, where="ablation.leave_one_out")
    rest = {k: v for k, v in ablation_raw.items() if k not in ("confirm", "leave_one_out")}
    ablation = validate_section(Ablation, rest, source=source, where="ablation")
    ablation.confirm, ablation.leave_one_out = confirm, loo
    return ablation


def _search_space_file(path: Path, ss_name: str, given: Path | None) -> Path:
    """A run folder's copy (``given``), a .yaml path relative to the spec, or
    search_spaces/<name>.yaml."""
    if given is not None:
        return given
    if ss_name.endswith((".yaml", ".yml")):
        return Path(ss_name) if Path(ss_name).is_absolute() else (path.parent / ss_name).resolve()
    return SEARCH_SPACES_DIR / f"{ss_name}.yaml"


def load_spec(
    path: Path,
    *,
    smoke: bool = False,
    overrides: Sequence[str] = (),
    search_space_path: Path | None = None,
    name: str | None = None,
    check_family: bool = True,
    fixed: Sequence[str] = (),
    refuse_searched_config: bool = True,
) -> StudySpec:
    """Read, merge (smoke, then overrides) and validate a spec and its search space.
    ``search_space_path`` and ``name`` replace the spec's own when re-reading the
    copies kept in a run folder. ``check_family=False`` skips building the family's
    config (which imports torch): for re-reading a run's copies only to report it,
    since they were checked when the run started. ``fixed``: ``--fix NAME=VALUE``
    texts, each pinning a search-space parameter for this run (see _apply_fixed).
    ``refuse_searched_config=False`` lets an override set ``config.X`` for a searched
    X (the searched value wins): for replaying a run recorded before that was refused."""
    source = str(path)
    raw = _read_merged(path, smoke, overrides)
    _check_what_runs(source, raw)
    ss_name = str(raw.get("search_space", name or path.stem))
    seed = raw.get("seed", 0)
    metrics, modes = objectives(source, raw["metric"], raw["mode"])
    spec = StudySpec(
        name=name or path.stem, path=path, metric=metrics[0], mode=modes[0], metrics=metrics, modes=modes,
        family=raw.get("family"),
        trainable=raw.get("trainable"), description=str(raw.get("description", "")).strip(), search_space=ss_name,
        seed=seed, budget=validate_section(Budget, raw.get("budget"), source=source, where="budget"),
        resources=validate_section(Resources, raw.get("resources"), source=source, where="resources"),
        config=raw.get("config") or {}, ablation=_parse_ablation(source, raw.get("ablation")),
        metric_scale=metric_scales(source, raw.get("metric_scale", "interval"), metrics)[0],
        metric_scales=metric_scales(source, raw.get("metric_scale", "interval"), metrics),
        search_space_path=_search_space_file(path, ss_name, search_space_path),
        report=report_metrics(source, raw.get("report"), metrics, modes),
    )
    _check_budget(source, spec.budget)
    spec.search = _parse_search(source, raw.get("search"), seed=seed, num_samples=spec.budget.num_samples)
    _check_resources(source, spec.resources)
    assert spec.search_space_path is not None
    spec.params = load_search_space(spec.search_space_path)
    if refuse_searched_config:
        _refuse_searched_config(spec, overrides, fixed)
    if fixed:
        _apply_fixed(spec, fixed)
    if check_family and spec.family:
        _check_family_values(spec)
    _check_ablation(spec)
    _check_search(spec)
    return spec
