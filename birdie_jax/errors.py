"""Exceptions that carry a message meant for the user.

Every problem with user input (config, corpus, tokens, checkpoints) is raised as a
subclass of :class:`BirdieError`; the CLI prints its message on one line and exits
with status 2 instead of showing a traceback.
"""


class BirdieError(Exception):
    """Base class: a problem the user can fix, described in the message."""


class ConfigError(BirdieError, ValueError):
    """A config file, field or override is unknown, misspelt or of the wrong type."""


class DataError(BirdieError, ValueError):
    """A corpus, tokenizer file or token id is missing, empty, undecodable or out of range."""


class CheckpointError(BirdieError, ValueError):
    """A checkpoint folder is missing, corrupt, or was written by another config."""
