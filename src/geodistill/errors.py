"""User-facing errors: the CLI prints ``error: <message>`` (one line) and exits non-zero."""


class GeodistillError(Exception):
    """A problem the user can fix (bad path, bad model, bad data). Message names the thing and the reason."""


class ModelLoadError(GeodistillError):
    """A model spec could not be resolved or loaded."""


class DataError(GeodistillError):
    """A data spec or a sample is unusable (raised in --strict mode, or when nothing usable remains)."""


class StorageError(GeodistillError, OSError):
    """A write the disk or file system refused (full, read-only, a file in the way): still an OSError to
    code that catches those, and a one-line user error naming the path and the reason to the CLI."""
