"""Errors that end a task with one line on stderr and a non-zero exit, never a traceback."""


class BakeryError(Exception):
    """A problem the user can fix; the message is the whole story, in one line."""

    exit_code = 1


class ConfigError(BakeryError):
    """A mistake in an image definition, located by file and key."""

    def __init__(self, path: object, key: str, message: str) -> None:
        where = f"{path}: {key}" if key else str(path)
        super().__init__(f"{where}: {message}")
        self.path, self.key = path, key


class Interrupted(BakeryError):
    """Ctrl-C or SIGTERM, after whatever was created has been cleaned up."""

    exit_code = 130


class SpotInterrupted(BakeryError):
    """EC2 took a spot instance back mid-run: nothing is wrong with the image, so run it again.

    75 is EX_TEMPFAIL (sysexits.h); CI retries exactly this exit code and no other.
    """

    exit_code = 75
