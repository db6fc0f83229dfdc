"""Errors a user can fix. The CLI prints their one-sentence message and exits with status 2."""

from __future__ import annotations

import difflib


class UserError(ValueError):
    """Bad input from the user: a wrong name, value, path or file. Never a bug in resnetlab."""


class ConfigError(UserError):
    """A configuration value that cannot work; the message names it and what would."""


def closest(name: str, choices: list[str] | tuple[str, ...], n: int = 3) -> list[str]:
    """The few choices that look most like `name` (for 'did you mean' hints)."""
    return difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)


def did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """' (did you mean a or b?)' or '' when nothing is close."""
    near = closest(name, choices)
    return f" (did you mean {' or '.join(near)}?)" if near else ""
