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
