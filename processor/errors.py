"""One root error; every failure the processor reports to a person is one of these."""

from __future__ import annotations

# Exit codes: 0 ok, 1 runtime failure (systemd may restart), 2 the operator must change something.
EXIT_FAILURE = 1
EXIT_USAGE = 2


class ProcessorError(Exception):
    """Root of every error the processor raises on purpose."""

    exit_code = EXIT_FAILURE


class ConfigError(ProcessorError):
    """Configuration is invalid; carries every problem found, one line each."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class DatabaseError(ProcessorError):
    """The database could not be reached or answered with an error."""


class ListenUnavailable(DatabaseError):
    """LISTEN receives no notifications on this connection (a transaction-mode pooler): not transient."""


class NotFoundError(DatabaseError):
    """An admin call named a generation that does not exist."""


class SchemaError(ProcessorError):
    """The database schema is missing, older than needed, or its migrations were edited."""

    exit_code = EXIT_USAGE


class MigrationError(SchemaError):
    """A migration cannot be applied safely."""


class UsageError(ProcessorError):
    """A command-line argument is malformed."""

    exit_code = EXIT_USAGE
