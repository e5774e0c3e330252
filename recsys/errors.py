"""The project's documented errors.

Every error a user can trigger with bad input derives from :class:`RecsysError`; the CLI turns
these into a one-line message and exit status 2 instead of a stack trace.
"""

from __future__ import annotations

SHOWN_CHARS = 80
"""Error messages quote at most this many characters of a value a user gave (ids, ratings, params)."""


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters plus ``...``: a 20 MB id is never echoed back whole."""
    text = repr(value) if not isinstance(value, str) or len(value) <= 4 * limit else repr(value[: 4 * limit])
    return text[:limit] + "..." if len(text) > limit else text


class RecsysError(Exception):
    """Base class of every error the engine raises on purpose."""


class DataError(RecsysError, ValueError):
    """Bad input data: names the file, the line or row, the field and what was expected."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
        expected: str | None = None,
        got: object | None = None,
    ) -> None:
        self.path, self.line, self.field, self.expected, self.got = path, line, field, expected, got
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        text = message
        if expected is not None:
            text += f"; expected {expected}"
        if got is not None:
            text += f", got {shown(got)}"
        super().__init__(f"{', '.join(where)}: {text}" if where else text)


class SpecError(RecsysError, ValueError):
    """An invalid dataset spec or configuration (unknown field kind, missing column...)."""


class DatasetNotFoundError(RecsysError, FileNotFoundError):
    """A dataset is not on disk; the message says how to get it."""


class DownloadError(RecsysError):
    """Every source of a dataset failed, or a download failed its checksum."""


class UnknownItemError(RecsysError, KeyError):
    """Ratings name items the model does not know (pass ``on_unknown='ignore'`` to skip them).

    :meth:`listing` quotes the first few unknown ids, each cut to :data:`SHOWN_CHARS` characters."""

    @staticmethod
    def listing(ids: list, first: int = 5) -> str:
        return ", ".join(shown(i) for i in ids[:first]) + (" ..." if len(ids) > first else "")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownUserError(RecsysError, KeyError):
    """A user id the model has no record of (``recommend_user``; pass ``on_unknown='cold'`` to score
    them as a new user), or a model that keeps no record of its training users.

    :meth:`listing` quotes the first few unknown ids, each cut to :data:`SHOWN_CHARS` characters."""

    listing = staticmethod(UnknownItemError.listing)

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ScoringInputError(RecsysError, ValueError):
    """A scoring request is malformed (NaN or off-scale rating, wrong type, empty when not allowed)."""


class ModelFileError(RecsysError):
    """A model or checkpoint file is missing, truncated, tampered with or of an unsupported format."""


class FeatureMismatchError(RecsysError, ValueError):
    """A model is applied to data whose feature spec differs from the one it was trained on."""


class TrainingError(RecsysError, RuntimeError):
    """Training cannot go on (for example a non-finite loss that persists)."""
