"""What studies.quiet drops from the console, and what it must keep."""

from __future__ import annotations

from studies.quiet import without_worker_exit_noise

# As a Ray worker printed it when the raylet ended it during a garbage-collector callback
# (seen in a CLI's stderr under load: the driver forwards worker output without a prefix).
RAY_WORKER_EXIT = [
    "Exception ignored in: <function WeakSet.__init__.<locals>._remove at 0x7efc33f9e660>",
    "Traceback (most recent call last):",
    '  File "/usr/lib/python3.11/_weakrefset.py", line 39, in _remove',
    "    def _remove(item, selfref=ref(self)):",
    "",
    '  File "/venv/lib/python3.11/site-packages/ray/_private/worker.py", line 1063, in sigterm_handler',
    "    raise_sys_exit_with_custom_error_message(",
    '  File "python/ray/_raylet.pyx", line 712, in ray._raylet.raise_sys_exit_with_custom_error_message',
    "SystemExit: 1",
]

USER_IGNORED = [
    "Exception ignored in: <function Loader.__del__ at 0x7f00>",
    "Traceback (most recent call last):",
    '  File "/home/me/mine/loader.py", line 9, in __del__',
    "    self.h.close()",
    "SystemExit: 1",
]


def test_rays_own_worker_exit_is_dropped_and_the_lines_around_it_kept() -> None:
    lines = ["epoch 1 done", *RAY_WORKER_EXIT, "epoch 2 done"]
    assert without_worker_exit_noise(lines) == ["epoch 1 done", "epoch 2 done"]


def test_every_other_traceback_is_kept_whole() -> None:
    crash = ["Traceback (most recent call last):", '  File "fn.py", line 3, in train', "ValueError: bad"]
    assert without_worker_exit_noise(crash) == crash
    assert without_worker_exit_noise(USER_IGNORED) == USER_IGNORED
    both = [*USER_IGNORED, *RAY_WORKER_EXIT, *USER_IGNORED]
    assert without_worker_exit_noise(both) == [*USER_IGNORED, *USER_IGNORED]


def test_a_block_cut_off_by_the_batch_is_kept() -> None:
    """Without its SystemExit line it cannot be told apart: printed, not guessed away."""
    cut = RAY_WORKER_EXIT[:4]
    assert without_worker_exit_noise(["a", *cut]) == ["a", *cut]
    assert without_worker_exit_noise([*cut, *RAY_WORKER_EXIT]) == cut
