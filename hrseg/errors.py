"""The one exception base the CLI turns into a clean message and exit code 1.

Library code raises subclasses (``ConfigError``, ``CheckpointError``, ``DatasetError``, ...);
they are ``ValueError``s, so callers that do not know hrseg still catch them naturally.
"""


class HrsegError(ValueError):
    """A user-facing error: the message names the file, key or value and what was expected."""
