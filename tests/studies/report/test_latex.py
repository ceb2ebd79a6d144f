"""The report's LaTeX tables (studies/report/latex.py): escaping, alignment,
short captions, and every table a report writes compiled with a real pdflatex
(.ci/run installs it from Debian's texlive-latex-base and
texlive-latex-recommended): no error, no overfull box, no float too large."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from studies import driver
from studies.report.latex import TEXTWIDTH_PT, latex_escape, latex_table, numeric_cell, numeric_column, short_caption
from studies.report.write import _display
from studies.runs.designed import plan_designed, plan_front_confirmation
from studies.runs.run_folder import RunFolder
from studies.spec.screening_design import spec_design
from studies.spec.study import SEARCH_SPACES_DIR, STUDIES_DIR
from tests.studies.report.test_report_files import GRACE, MAX_EPOCHS, SHAPE_EFFECT, write_run_folder, write_run_json

PDFLATEX = shutil.which("pdflatex")
needs_pdflatex = pytest.mark.skipif(
    PDFLATEX is None, reason="pdflatex is not installed (.ci/run installs Debian's texlive-latex-base and "
                             "texlive-latex-recommended; `apt-get install texlive-latex-base texlive-latex-recommended`)")
COMPILE_TIMEOUT_S = 60    # pdflatex can wait for input on a broken file: never let it hang the suite


# --------------------------------------------------------------- compiling a table

def compile_problems(tex: Path, workdir: Path) -> list[str]:
    """``tex`` in a minimal article with the packages its header names, through
    pdflatex: what went wrong (errors, overfull boxes, floats too large for the
    page, a timeout), or [] if nothing did."""
    text = tex.read_text()
    header = [line for line in text.splitlines() if line.startswith("%")]
    packages = [m.group(1) for line in header for m in [re.match(r"% needs (\\usepackage\{[\w-]+\})$", line)] if m]
    folder = workdir / re.sub(r"\W", "_", str(tex))
    folder.mkdir(parents=True)
    shutil.copyfile(tex, folder / "table.tex")
    (folder / "doc.tex").write_text("\\documentclass{article}\n" + "\n".join(packages)
                                    + "\n\\begin{document}\n\\input{table}\n\\end{document}\n")
    assert PDFLATEX is not None
    try:
        proc = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=folder,
                              capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return [f"pdflatex ran past {COMPILE_TIMEOUT_S} s"]
    log_path = folder / "doc.log"
    log = log_path.read_text(errors="replace") if log_path.is_file() else proc.stdout
    problems = [line for line in log.splitlines()
                if line.startswith("!") or line.startswith(("Overfull \\hbox", "Overfull \\vbox"))
                or "Float too large" in line]
    if proc.returncode != 0:
        problems.insert(0, f"pdflatex exit status {proc.returncode}")
    return problems


def assert_all_compile(tables: Path, workdir: Path) -> list[Path]:
    texs = sorted(tables.rglob("*.tex"))
    failures = {str(t.relative_to(tables)): p for t in texs if (p := compile_problems(t, workdir))}
    assert not failures, json.dumps(failures, indent=1)
    return texs


# --------------------------------------------------------------- run folders a report is written from

def _results(trial_dir: Path, trial_id: str, rows: list[dict]) -> None:
    lines = [json.dumps({"trial_id": trial_id, "epoch": e, "training_iteration": e, "time_total_s": 2.0 * e,
                         "time_this_iter_s": 2.0, "timestamp": int(1.7e9 + 2 * e), **row})
             for e, row in enumerate(rows, start=1)]
    (trial_dir / "result.json").write_text("\n".join(lines) + "\n")


def _ramp_trial(trial_dir: Path, trial_id: str, params: dict, epochs: int, rng: np.random.Generator, *,
                seed: int = 0, label: str | None = None) -> None:
    trial_dir.mkdir()
    config = {"num_sequences": 256, "max_epochs": MAX_EPOCHS, "seed": seed, **params}
    (trial_dir / "params.json").write_text(json.dumps({**config, **({"confirm_label": label} if label else {})}))
    curve = [1.0 + SHAPE_EFFECT[params["ramp_shape"]] + 0.5 / e + float(rng.normal(0, 0.03)) for e in range(1, epochs + 1)]
    _results(trial_dir, trial_id, [{"val_mse": v, "train_loss": 1.1 * v} for v in curve])


def single_objective_run(run_dir: Path) -> Path:
    """mdn_ramp's run folder as test_report_files writes it, plus the trials of the
    spec's start design (screening tables) and a designed stage planned as a run
    plans it (confirmation and leave-one-out with the shape sweep); its tables/."""
    epochs = write_run_folder(run_dir)
    spec = driver.spec_of_run(run_dir)
    rng = np.random.default_rng(1)
    design = spec_design(spec)
    for n, row in enumerate(design):
        _ramp_trial(run_dir / f"trial_d{n:04d}", f"d{n:04d}", row, GRACE, rng)
    write_run_json(run_dir, num_samples=len(epochs) + len(design))
    run = driver.read_trials(RunFolder(run_dir), spec)
    a = spec.ablation
    plan = plan_designed(run, params=spec.params, metric=spec.metric, mode=spec.mode, baseline=a.baseline,
                         factors=a.factors or [p.name for p in spec.params], top_k=a.confirm.top_k,
                         confirm_seeds=a.confirm.seeds, loo_seeds=a.leave_one_out.seeds,
                         sweep=list(a.leave_one_out.sweep))
    _designed_stage(run_dir, plan, a.confirm.seeds, MAX_EPOCHS, lambda d, tid, c, s: _ramp_trial(
        d, tid, c["params"], MAX_EPOCHS, rng, seed=s, label=c["label"]))
    driver.write_outputs(run_dir, driver.spec_of_run(run_dir))
    return run_dir / "tables"


def _designed_stage(run_dir: Path, plan: dict, seeds: int, max_epochs: int, write_trial) -> None:  # noqa: ANN001
    """What studies.tune.designed_stage writes: candidates.json, one trial folder per config and seed."""
    folder = RunFolder(run_dir)
    seed_values = [1000 + i for i in range(max(c["seeds"] for c in plan["configs"]))]
    folder.designed.mkdir()
    folder.candidates.write_text(json.dumps({**plan, "seeds": seeds, "seed_values": seed_values,
                                             "max_epochs": max_epochs}, default=str))
    n = 0
    for c in plan["configs"]:
        for s in seed_values[:c["seeds"]]:
            write_trial(folder.designed / f"trial_c{n:04d}", f"c{n:04d}", c, s)
            n += 1


MO_EPOCHS = 9
MO_SPREAD = {"most_probable": 0.0, "next_most_probable": 0.5, "random": 1.0}


def _sampling_trial(trial_dir: Path, trial_id: str, params: dict, epochs: int, rng: np.random.Generator, *,
                    seed: int = 0, label: str | None = None) -> None:
    trial_dir.mkdir()
    config = {"max_epochs": MO_EPOCHS, "seed": seed, **params}
    (trial_dir / "params.json").write_text(json.dumps({**config, **({"confirm_label": label} if label else {})}))
    spread = MO_SPREAD[params["sampling"]]
    _results(trial_dir, trial_id, [{"gen_jerk_ratio": 1.0 + spread + float(rng.normal(0, 0.05)),
                                    "gen_diversity": 0.2 + spread + float(rng.normal(0, 0.05)),
                                    "emotion_consistency": 0.9 - 0.3 * spread + float(rng.normal(0, 0.02))}
                                   for _ in range(epochs)])


def trade_off_run(run_dir: Path) -> Path:
    """A run of the three-objective mdn_sampling study (27 trials, ASHA-like
    budgets) with its front confirmed over seeds; its tables/."""
    rng = np.random.default_rng(3)
    run_dir.mkdir(parents=True)
    shutil.copyfile(STUDIES_DIR / "mdn_sampling.yaml", run_dir / driver.SPEC_COPY)
    shutil.copyfile(SEARCH_SPACES_DIR / "mdn_sampling.yaml", run_dir / driver.SEARCH_SPACE_COPY)
    n = 27
    for i in range(n):
        params: dict = {"sampling": str(rng.choice(list(MO_SPREAD)))}
        if params["sampling"] != "most_probable":
            params["sigma_schedule"] = str(rng.choice(["constant", "linear", "cosine"]))
            params["sigma_start"] = float(np.exp(rng.uniform(0, np.log(100))))
            if params["sigma_schedule"] != "constant":
                params["sigma_end"] = float(np.exp(rng.uniform(np.log(0.5), np.log(10))))
        epochs = MO_EPOCHS if i < 3 or i % 9 == 0 else 3 if i % 3 == 0 else 1
        _sampling_trial(run_dir / f"trial_{i:05d}", f"{i:05d}", params, epochs, rng)
    (run_dir / "run.json").write_text(json.dumps({
        "study": "mdn_sampling", "run": run_dir.name, "status": "finished", "started": 1.7e9,
        "invocation": {"study_file": str(STUDIES_DIR / "mdn_sampling.yaml"), "smoke": False, "overrides": [],
                       "data": None, "address": None},
        "metric": ["gen_jerk_ratio", "gen_diversity", "emotion_consistency"], "mode": ["min", "max", "max"],
        "max_epochs": MO_EPOCHS, "num_samples": n, "params": ["sampling", "sigma_schedule", "sigma_start", "sigma_end"],
        "resources": {"cpus_per_trial": 1.0, "gpus_per_trial": 0.0}, "max_concurrent": 2,
        "cluster": {"CPU": 2.0, "GPU": 0.0}, "git_commit": None, "host": "test", "wall_s": 60.0}))
    spec = driver.spec_of_run(run_dir)
    run = driver.read_trials(RunFolder(run_dir), spec)
    c = spec.ablation.confirm
    plan = plan_front_confirmation(run, params=spec.params, metrics=spec.metrics, modes=spec.modes,
                                   baseline=spec.reference_point(), max_epochs=MO_EPOCHS, top_k=c.top_k, seeds=c.seeds)
    _designed_stage(run_dir, plan, c.seeds, MO_EPOCHS, lambda d, tid, cfg, s: _sampling_trial(
        d, tid, cfg["params"], MO_EPOCHS, rng, seed=s, label=cfg["label"]))
    driver.write_outputs(run_dir, spec)
    return run_dir / "tables"


@pytest.fixture(scope="module")
def single_objective_tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return single_objective_run(tmp_path_factory.mktemp("results") / "mdn_ramp" / "r")


@pytest.fixture(scope="module")
def trade_off_tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trade_off_run(tmp_path_factory.mktemp("results") / "mdn_sampling" / "r")


# --------------------------------------------------------------- every table a report writes compiles

@needs_pdflatex
def test_every_table_of_an_ablation_report_compiles(single_objective_tables: Path, tmp_path: Path) -> None:
    texs = {t.name for t in assert_all_compile(single_objective_tables, tmp_path)}
    # Binned numeric factors (levels like "[0.01, 0.027)") in every kind of table, the confirmation's
    # params, the designed stage, the screening design, and the rest.
    for name in ("ablation_initial_weight", "ablation_lr", "ablation_ramp_shape", "modelled_lr", "modelled_ramp_shape",
                 "interactions_lr", "screening_lr", "screening_importance", "confirmation", "leave_one_out",
                 "importance", "budget"):
        assert f"{name}.tex" in texs, name
    assert "{[}0.0003, 0.00053)" in (single_objective_tables / "ablation_lr.tex").read_text()


@needs_pdflatex
def test_every_table_of_a_trade_off_report_compiles(trade_off_tables: Path, tmp_path: Path) -> None:
    texs = {str(t.relative_to(trade_off_tables)) for t in assert_all_compile(trade_off_tables, tmp_path)}
    for name in ("pareto_front.tex", "pareto_levels.tex", "confirmation.tex", "budget.tex",
                 "gen_jerk_ratio/modelled_sigma_start.tex", "emotion_consistency/importance.tex"):
        assert name in texs, name


@needs_pdflatex
def test_an_awkward_table_compiles(tmp_path: Path) -> None:
    """Every special character, a leading [, characters beyond ASCII, long text,
    many columns, many rows: no error, nothing past the margin or the page."""
    rng = np.random.default_rng(0)
    rows = 70
    shown = pd.DataFrame({
        "level": [f"[{i / 100:g}, {(i + 1) / 100:g})" + (" (ref)" if i == 0 else "") for i in range(rows)],
        "text & more": ["a_b & c% $d #e {f} ~g ^h \\i <j> |k| \"l\" --m β² — x" for _ in range(rows)],
        "sym_bols": ["&%$#_{}~^\\<>|[]\" --é×≤±" for _ in range(rows)],
        **{f"metric_{k} mean": [f"{v:.4g}" for v in rng.normal(0, 1, rows)] for k in range(4)},
        **{f"metric_{k} p_holm": ["<0.001"] * rows for k in range(4)},
        "params": [f"a_rate={i}, b_name=x_{i}, c=[1, 2]" for i in range(rows)],
        "why": ["a reason long enough to go below the table as a note, " * 2 + str(i % 3) for i in range(rows)],
    })
    tex = tmp_path / "awkward.tex"
    tex.write_text(latex_table(shown, "**Awkward** `table` — 100% of it_with_specials; ** p_holm < 0.01.", "tab:awkward"))
    assert compile_problems(tex, tmp_path) == []
    assert tex.read_text().count(r"\begin{table}") > 1      # too tall for one page: continued


@needs_pdflatex
def test_the_check_catches_what_the_old_tables_got_wrong(tmp_path: Path) -> None:
    """pandas' to_latex, as the report wrote it before: a binned level starting a
    row is read as \\\\'s optional argument (an error), and a long params string
    runs off the page (an overfull box)."""
    binned = pd.DataFrame({"level": ["[0.001, 0.01) (ref)", "[0.01, 0.1]"], "mean": ["0.5", "0.4"]})
    wide = pd.DataFrame({"config": ["top1"], "params": [", ".join(f"parameter_{i}=0.00{i}" for i in range(8))]})
    for name, shown in (("binned", binned), ("wide", wide)):
        old = shown.to_latex(index=False, caption="A caption.", label=f"tab:{name}", escape=True)
        (tmp_path / f"{name}.tex").write_text("% needs \\usepackage{booktabs}\n" + old)
        assert compile_problems(tmp_path / f"{name}.tex", tmp_path / "old"), name
        (tmp_path / f"{name}_new.tex").write_text(latex_table(shown, "A caption.", f"tab:{name}"))
        assert compile_problems(tmp_path / f"{name}_new.tex", tmp_path / "new") == [], name


# --------------------------------------------------------------- escaping

@pytest.mark.parametrize(("raw", "tex"), [
    ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"), ("_", r"\_"), ("{", r"\{"), ("}", r"\}"),
    ("~", r"\textasciitilde{}"), ("^", r"\textasciicircum{}"), ("\\", r"\textbackslash{}"),
    ("<", r"\textless{}"), (">", r"\textgreater{}"), ("|", r"\textbar{}"), ("±", r"$\pm$"), ("—", "---"),
    ("[", "{[}"), ("--", "-{}-"), ("β", r"$\beta$"), ("²", r"\textsuperscript{2}"), ("é", "é"), ("\u4e00", "?"),
])
def test_each_special_character_is_escaped(raw: str, tex: str) -> None:
    assert latex_escape(raw) == tex
    assert latex_escape(f"a{raw}b") == f"a{tex}b"


def test_a_cell_that_starts_with_a_bracket_is_never_an_optional_argument() -> None:
    assert latex_escape("[0.001, 0.01)") == "{[}0.001, 0.01)"
    shown = pd.DataFrame({"level": ["[0.001, 0.01) (ref)", "[0.01, 0.1]"], "trials": ["3", "4"]})
    text = latex_table(shown, "Caption.", "tab:x")
    assert not re.search(r"(\\\\|\\midrule|\\toprule)\s*\[", text)
    assert not re.search(r"^\[", text, re.M)


# --------------------------------------------------------------- alignment

@pytest.mark.parametrize("cell", ["0.5", "-3.2e-05", "<0.001", "76.4%", "0.8255 ± 0.13", "0.002566 [-0.0683, 0.062]",
                                  "3/3", "0.01 **", "25", "inf", "-0.29*"])
def test_numbers(cell: str) -> None:
    assert numeric_cell(cell)


@pytest.mark.parametrize("cell", ["constant", "[0.01, 0.027)", "3.5 min", "ramp_shape=linear", "True", "**", "1, 2"])
def test_not_numbers(cell: str) -> None:
    assert not numeric_cell(cell)


def test_a_column_is_numeric_when_every_filled_cell_is_a_number() -> None:
    assert numeric_column(["0.5", "", "<0.001"])
    assert not numeric_column(["0.5", "n/a"])
    assert not numeric_column(["", ""])


def test_numbers_right_text_left() -> None:
    shown = pd.DataFrame({"level": ["a", "b"], "mean": ["0.5", "-0.25"], "p": ["<0.001", ""], "sig": ["**", ""]})
    text = latex_table(shown, "Caption.", "tab:x")
    assert r"\begin{tabular}{@{}lrrl@{}}" in text
    assert "$-$0.25" in text                       # a minus sign, not a hyphen


def test_params_are_one_column_per_parameter_under_one_header() -> None:
    shown = pd.DataFrame({"config": ["top1", "baseline"], "params": ["shape=linear, lr=0.001", "shape=constant"],
                          "mean": ["0.7", "1"]})
    text = latex_table(shown, "Caption.", "tab:x")
    assert r"\multicolumn{2}{c}{params}" in text and r"\cmidrule(lr){2-3}" in text
    assert "top1 & linear & 0.001 & 0.7" in text and "baseline & constant &  & 1" in text


def test_metric_columns_share_a_group_header() -> None:
    shown = pd.DataFrame({"config": ["a"], "loss mean": ["1"], "loss sd": ["0.1"], "acc mean": ["0.9"],
                          "acc sd": ["0.01"]})
    text = latex_table(shown, "Caption.", "tab:x")
    assert r"\multicolumn{2}{c}{loss}" in text and r"\multicolumn{2}{c}{acc}" in text
    assert "config & mean & sd & mean & sd" in text


def test_long_text_goes_below_the_table_as_notes() -> None:
    why = "a reason far too long for a table cell, given once"
    shown = pd.DataFrame({"level": ["a", "b", "c"], "withheld": [why, "", why]})
    text = latex_table(shown, "Caption.", "tab:x")
    assert "a & (a)" in text and "c & (a)" in text and text.count(why) == 1


def test_a_wide_table_is_split_into_blocks_that_each_name_the_row() -> None:
    shown = pd.DataFrame({"parameter": ["lr", "shape"],
                          **{f"column_number_{i}": ["0.0001234", "5.678e-05"] for i in range(14)}})
    text = latex_table(shown, "Caption.", "tab:x")
    blocks = text.count(r"\begin{tabular}{")
    assert blocks >= 2 and text.count("\nlr & ") == blocks
    assert text.count("0.0001234") == 14                  # every column once


def test_the_header_names_the_packages_the_table_needs() -> None:
    short = latex_table(pd.DataFrame({"a": ["1"]}), "Caption.", "tab:x")
    assert short.startswith("% ") and r"% needs \usepackage{booktabs}" in short and "array" not in short
    wrapped = latex_table(pd.DataFrame({"a": ["1"], "b": ["some words that wrap in a narrow column"],
                                        **{f"n{i}": ["123456.789"] for i in range(5)}}), "Caption.", "tab:x")
    assert r"% needs \usepackage{array}" in wrapped and r"\raggedright\arraybackslash}p{" in wrapped
    assert f"{TEXTWIDTH_PT:g}pt" in short


# --------------------------------------------------------------- captions

OBSERVED = ("**lr**, observed — val_mse (lower is better) at epoch 3 (ASHA rung; 6 of 8 trials reached it), per level "
            "over the trials the searcher chose, which over-sample its favourite region: local, not global. Reference: "
            "[0.00095, 0.0017) (bin holding the spec's baseline 0.001). `trials`: trials with that level. Mean ± 95% "
            "t-interval; * p_holm < 0.05, ** p_holm < 0.01.")
MODELLED = ("**No mark in this table: the surrogate does not predict held-out trials well enough: its out-of-bag R² is "
            "0.12, below the 0.5 required.** **initial_weight**, modelled — global marginal of val_mse (lower is "
            "better) at epoch 2: a surrogate (each factor's main effect, a smooth curve for a numeric factor and one "
            "value per choice, plus a random forest on what they leave; scikit-learn) fitted to log(val_mse) on the 25 "
            "distinct configs that reached epoch 2. `p`: two-sided bootstrap p-value; a mark only at ** p_holm < 0.01.")


def test_the_caption_on_the_page_is_short() -> None:
    assert short_caption(OBSERVED) == (
        "lr, observed — val_mse (lower is better) at epoch 3 (ASHA rung; 6 of 8 trials reached it), per level over the "
        "trials the searcher chose, which over-sample its favourite region: local, not global. "
        "* p_holm < 0.05, ** p_holm < 0.01.")
    assert short_caption(MODELLED) == (
        "initial_weight, modelled — global marginal of val_mse (lower is better) at epoch 2. No mark in this table: "
        "the surrogate does not predict held-out trials well enough. ** p_holm < 0.01.")
    assert short_caption(OBSERVED, marks=False).endswith("local, not global.")
    assert short_caption("Budget: what the study cost.") == "Budget: what the study cost."


def test_a_long_first_sentence_is_cut_at_a_clause_outside_parentheses() -> None:
    sentence = "Confirmation (designed evidence): " + ", ".join(f"clause number {i} (with, commas)" for i in range(20))
    short = short_caption(sentence + ". Second sentence.")
    assert len(short) <= 201 and short.endswith(".") and short.count("(") == short.count(")")
    assert "Second" not in short


def test_the_tex_caption_is_short_escaped_and_the_full_one_is_in_the_header() -> None:
    shown = pd.DataFrame({"level": ["[0.001, 0.01) (ref)"], "sig": [""]})
    text = latex_table(shown, OBSERVED, "tab:ablation_lr")
    caption = re.search(r"\\caption\{(.*)\}\n", text).group(1)
    assert caption.startswith("lr, observed --- val\\_mse") and len(caption) < 320
    assert r"\mbox{** p\_holm \textless{} 0.01}" in caption and "**lr**" not in caption and "`" not in caption
    comment = " ".join(line[1:].strip() for line in text.splitlines() if line.startswith("%"))
    assert "Reference: [0.00095, 0.0017) (bin holding the spec's baseline 0.001)." in comment
    assert r"\label{tab:ablation_lr}" in text


def test_the_display_strings_of_a_real_table_are_what_the_tex_shows() -> None:
    table = pd.DataFrame({"level": ["[0.01, 0.027) (ref)", "[0.027, 0.071)"], "mean": [0.8255, 0.8228],
                          "ci95": [0.13, float("nan")], "p": [float("nan"), 0.0004], "sig": ["", "**"]})
    text = latex_table(_display(table), "Caption.", "tab:x")
    assert "{[}0.01, 0.027) (ref) & 0.8255 $\\pm$ 0.13 &  &  \\\\" in text
    assert "{[}0.027, 0.071) & 0.8228 & \\textless{}0.001 & ** \\\\" in text
