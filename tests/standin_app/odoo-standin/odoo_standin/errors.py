"""The one error type the commands report as a one-line message."""


class StandinError(Exception):
    """A failure the command line reports on stderr before exiting non-zero."""
