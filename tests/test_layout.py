"""The import rules of studies/ (README, "Layout"), each checked in a fresh interpreter.

1. ``studies.spec`` (what a study is) imports neither Ray nor torch, nor any
   other package of studies/.
2. ``studies.runs`` (every byte on disk) imports no Ray, and neither
   ``studies.tune`` nor ``studies.report``.
3. ``studies.report`` imports no Ray and never ``studies.tune``.
4. Only ``studies.tune`` and ``studies._compat`` import Ray, even lazily (a
   source check of every module), and ``core/`` never does.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STUDIES = REPO / "studies"


def _modules(package: str) -> list[str]:
    root = REPO.joinpath(*package.split("."))
    return sorted(".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__") for p in root.rglob("*.py"))


def _loaded_after_importing(modules: list[str]) -> set[str]:
    code = ("import sys, json; " + "; ".join(f"import {m}" for m in modules)
            + "; print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    import json

    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _under(loaded: set[str], *roots: str) -> list[str]:
    return sorted(m for m in loaded if any(m == r or m.startswith(r + ".") for r in roots))


@pytest.mark.parametrize(("package", "forbidden"), [
    ("studies.spec", ("ray", "torch", "studies.runs", "studies.tune", "studies.report")),
    ("studies.runs", ("ray", "studies.tune", "studies.report")),
    ("studies.report", ("ray", "studies.tune")),
])
def test_a_package_imports_only_what_its_layer_may(package: str, forbidden: tuple[str, ...]) -> None:
    loaded = _loaded_after_importing(_modules(package))
    assert not _under(loaded, *forbidden), f"importing {package} loaded {_under(loaded, *forbidden)[:10]}"
    # and not inside a function either (a lazy import the fresh interpreter never ran)
    lazy = {str(p.relative_to(REPO)): _under(_imports_of(p), *forbidden)
            for p in REPO.joinpath(*package.split(".")).rglob("*.py")}
    assert not {p: m for p, m in lazy.items() if m}


def _imports_of(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_only_tune_and_compat_import_ray_even_lazily() -> None:
    allowed = {STUDIES / "_compat.py"} | set((STUDIES / "tune").rglob("*.py"))
    offenders = {str(p.relative_to(REPO)): sorted(m for m in _imports_of(p) if m == "ray" or m.startswith("ray."))
                 for p in [*STUDIES.rglob("*.py"), *(REPO / "core").rglob("*.py")] if p not in allowed}
    assert not {p: m for p, m in offenders.items() if m}


def test_the_source_check_sees_a_lazy_import(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from ray.tune import Tuner\n    import ray\n")
    assert _imports_of(sample) == {"ray.tune", "ray"}


def test_the_face_lists_studies_without_ray() -> None:
    out = subprocess.run([sys.executable, "-c", "import sys, runpy; sys.argv = ['run.py', '--list']; "
                          "import contextlib, io\nwith contextlib.redirect_stdout(io.StringIO()):\n"
                          "    try:\n        runpy.run_path('studies/run.py', run_name='__main__')\n"
                          "    except SystemExit:\n        pass\n"
                          "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray'}))"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
