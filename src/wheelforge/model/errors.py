"""One error family for the whole library.

Every error carries a short stable id (``arch.unknown``), a one-line message
naming the thing that is wrong, and a hint naming the fix.  Only the CLI edge
(``wheelforge.cli.commands.run_task``) turns an error into an exit code.
"""

from __future__ import annotations


class WheelforgeError(Exception):
    """Base class: ``id`` + ``message`` + ``hint``."""

    exit_code = 2

    def __init__(self, id: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.id = id
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"[{self.id}] {self.message}"

    def render(self) -> str:
        """The two lines the CLI prints."""
        line = f"error[{self.id}]: {self.message}"
        return f"{line}\nhint: {self.hint}" if self.hint else line


class ConfigError(WheelforgeError):
    """Bad target, flag, environment variable or pyproject setting."""


class ArchError(ConfigError):
    """An architecture spelling we do not understand or the toolkit cannot build."""


class ToolchainError(WheelforgeError):
    """The CUDA toolkit, host compiler or build tools do not fit the target."""


class RecipeError(WheelforgeError):
    """A recipe file is invalid; the message names file and key."""


class SourceError(WheelforgeError):
    """Fetching or checking a pinned source failed."""


class ExtractionError(SourceError):
    """An archive holds a member we refuse to extract."""


class PatchError(WheelforgeError):
    """A patch of the series does not apply."""


class PlanError(WheelforgeError):
    """The inputs cannot make a coherent build plan."""


class BuildError(WheelforgeError):
    """The build command failed."""

    exit_code = 3


class OutOfMemoryError(BuildError):
    """A compiler was killed by the kernel's OOM killer."""


class WheelhouseError(WheelforgeError):
    """The wheelhouse cannot store or find an entry."""


class AuditError(WheelforgeError):
    """A binary lacks machine code for a requested architecture."""

    exit_code = 4


class VerifyError(WheelforgeError):
    """The post-build test suite failed."""

    exit_code = 4


class IndexError_(WheelforgeError):  # noqa: N801 - avoid shadowing the builtin
    """The package index cannot be written or served."""


class PublishError(WheelforgeError):
    """An upload to a remote index failed or was refused."""


class FarmError(WheelforgeError):
    """Build-farm configuration or coordination failed."""


class DoctorError(WheelforgeError):
    """``doctor`` found installed packages that would fail on the GPU (no kernel, driver too old, torch mismatch).

    Its own exit code so scripts can tell "the environment would fail" (5) from bad input (2).
    """

    exit_code = 5


class Interrupted(WheelforgeError):
    """Ctrl-C (SIGINT) stopped a task; the message says what was left behind."""

    exit_code = 130
