"""The workers' pre-import hook: imports what it is told, never fails a worker."""

from __future__ import annotations

import subprocess
import sys

from studies import worker_setup


def _in_fresh_python(env_module: str) -> str:
    code = ("import os, sys; os.environ['RAYSTUDIES_PREIMPORT'] = sys.argv[1]; "
            "from studies.worker_setup import preimport; preimport(); "
            "print(sorted(m for m in ('json.tool', 'torch', 'torch._dynamo') if m in sys.modules))")
    return subprocess.run([sys.executable, "-c", code, env_module], capture_output=True, text=True, check=True).stdout


def test_the_named_module_is_imported_and_torch_dynamo_with_torch() -> None:
    assert _in_fresh_python("json.tool").strip() == "['json.tool']"
    assert _in_fresh_python("core.experiments.mdn_motion").strip() == "['torch', 'torch._dynamo']"


def test_a_module_that_cannot_import_does_not_fail_the_worker() -> None:
    assert _in_fresh_python("no_such_module_here").strip() == "[]"


def test_the_runtime_env() -> None:
    assert worker_setup.runtime_env(None) is None
    env = worker_setup.runtime_env("pkg.mod")
    assert env == {"worker_process_setup_hook": "studies.worker_setup.preimport",
                   "env_vars": {"RAYSTUDIES_PREIMPORT": "pkg.mod"}}
