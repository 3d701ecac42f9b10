"""One root for every user-facing problem.

Anything raised as an :class:`NnipError` is the user's to fix (a bad file, a missing
model, an unavailable device); the batch runner prints it as ``path: message`` on stderr
without a traceback. Any other exception is a bug and shows its traceback with ``--debug``.
The core never imports click: the CLI edge turns these into exit codes.
"""

from __future__ import annotations

__all__ = [
    "NnipError",
    "InputError",
    "UnsupportedFormatError",
    "ImageReadError",
    "RawDecodeError",
    "OutputError",
    "OutputExistsError",
    "ModelError",
    "ModelNotFoundError",
    "ModelIntegrityError",
    "ProviderError",
    "ClusterError",
]


class NnipError(Exception):
    """A problem the user can fix; its message is one line, without the file name."""


class InputError(NnipError, OSError):
    """An input path that cannot be used (missing, a directory, unreadable, empty)."""


class UnsupportedFormatError(NnipError, ValueError):
    """A file whose content is not a format this command reads."""


class ImageReadError(NnipError, OSError):
    """A file of a known format that cannot be decoded (truncated, corrupt)."""


class RawDecodeError(ImageReadError):
    """A RAW file LibRaw cannot decode."""


class OutputError(NnipError, OSError):
    """The output cannot be written (directory cannot be created, disk full, ...)."""


class OutputExistsError(OutputError, FileExistsError):
    """The output exists and neither --overwrite nor --skip-existing was given."""


class ModelError(NnipError):
    """A model that cannot be used."""


class ModelNotFoundError(ModelError, LookupError):
    """No model installed for a task, or no model of that name."""


class ModelIntegrityError(ModelError):
    """A model file that is missing, corrupt (sha256) or does not match its spec."""


class ProviderError(NnipError, RuntimeError):
    """A requested onnxruntime execution provider that is not available."""


class ClusterError(NnipError):
    """A ``--cluster`` that cannot run the batch (no scheduler answers, no worker), or a
    file whose workers kept dying (see :mod:`nnip.core.cluster`)."""
