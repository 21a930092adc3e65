"""The errors of raytune-hpo: a user's mistake is a :class:`UserError` that carries where it
lies as data (the file, the field path), formatted once by ``str()``, which the CLI prints as
one line (exit code 2, nothing started).

A layer that knows more of the context adds it without reading the text: ``e.within("searcher")``
puts a field under its section, ``e.in_file(path)`` names the file. Nothing here imports the
rest of the package (``storage``, ``spec`` and the searchers all raise these).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

Field = tuple[Any, ...]  # a field path: ("searcher", "swarm_size"), ("loggers", 0, "mode")


def _path(field: str | int | Iterable[Any] | None) -> Field:
    if field is None:
        return ()
    if isinstance(field, (str, int)):
        return (field,)
    return tuple(field)


class UserError(ValueError):
    """A user mistake (bad file, bad name, bad path or value): one line, exit code 2.

    ``message`` says what is wrong (with the allowed values where there is a list), ``field``
    where in the sweep or study it is, ``source`` which file (or other input)."""

    def __init__(
        self,
        message: str,
        *,
        field: str | int | Iterable[Any] | None = None,
        source: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = _path(field)
        self.source = source

    @property
    def dotted_field(self) -> str:
        return ".".join(str(p) for p in self.field)

    def __str__(self) -> str:
        parts = [p for p in (self.source, self.dotted_field) if p]
        return ": ".join([*parts, self.message])

    def __reduce__(self):  # survives pickling (Ray sends errors between processes)
        return _rebuild, (type(self), self.message, self.field, self.source)

    def within(self, *outer: Any) -> UserError:
        """The same error with its field under ``outer`` (e.g. an option under ``searcher``)."""
        new = copy.copy(self)
        new.field = (*outer, *self.field)
        return new

    def in_file(self, source: str) -> UserError:
        """The same error naming ``source`` (kept if it names one already)."""
        new = copy.copy(self)
        new.source = self.source or source
        return new

    def as_spec_error(self, source: str | None = None) -> SpecError:
        """This error as a :class:`SpecError` (a sweep or study that cannot run)."""
        return SpecError(self.message, field=self.field, source=self.source or source)


def _rebuild(cls, message, field, source):
    return cls(message, field=field, source=source)


class SpecError(UserError):
    """A sweep or study file that cannot run; it names the field."""


def did_you_mean(name: Any, allowed: Iterable[Any]) -> str:
    """``"; did you mean 'x'?"`` for the allowed name nearest a misspelt ``name`` (difflib's
    ratio of at least 0.6), else ``""``: appended to an error that lists the allowed ones."""
    import difflib

    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, [str(a) for a in allowed], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def user_error(e: ValueError, *, field: Any = None) -> UserError:
    """``e`` as a UserError: ours as it is (under ``field`` when given), a foreign ValueError
    (a plug-in's, a library's) with its text as the message of ``field``."""
    if isinstance(e, UserError):
        return e.within(field) if field is not None else e
    text = " ".join(str(e).split()) or type(e).__name__
    return UserError(text, field=field)


__all__ = ["Field", "SpecError", "UserError", "did_you_mean", "user_error"]
