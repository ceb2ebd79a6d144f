"""The error every user-facing failure becomes: one line, exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: the message is the whole story (file, key, expected)."""
