"""The one user-facing error type: the CLI prints it as one line, services map it to 4xx."""


class CalsError(Exception):
    """A problem the user can fix (bad input, missing file, unknown name)."""
