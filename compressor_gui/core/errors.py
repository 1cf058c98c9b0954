"""One error family whose messages a user can act on; the UI shows them, the CLI exits 2."""

import re

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class CompressorError(Exception):
    """A failure explained in words the user can act on (shown verbatim, no traceback)."""


class ModelLoadError(CompressorError):
    """The file is not a model we can open (wrong format, truncated, unsafe, missing data)."""


class PlanError(CompressorError):
    """A recipe or per-layer setting is unknown or impossible."""


class CompressionError(CompressorError):
    """A compression step could not produce a valid model; the input is left untouched."""


class TargetError(CompressorError):
    """A benchmark target failed: runtime missing, SSH link dropped, remote error."""


class JobCancelled(CompressorError):
    """The user cancelled a running job."""


def error_text(exc: BaseException, limit: int = 300) -> str:
    """The first line of another library's error, without the terminal colour codes
    onnxruntime puts in its messages, at most `limit` characters (the exception's type when
    it says nothing): how such an error is quoted inside one of ours."""
    text = _ANSI_ESCAPE.sub("", str(exc)).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
