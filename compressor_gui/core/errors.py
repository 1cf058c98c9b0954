"""One error family whose messages a user can act on; the UI shows them, the CLI exits 2."""


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
