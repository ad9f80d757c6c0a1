"""User-facing errors and problem reports.

Every failure a user can cause (a broken dataset.json, a missing file, a wrong flag) is raised as an
``AutoSegError`` whose message names the file, says what is wrong and how to fix it. The command line
prints that message as one line and exits non-zero instead of showing a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


class AutoSegError(Exception):
    """An error caused by the user's input; its message is complete and shown without a traceback."""


@dataclass(frozen=True)
class Problem:
    """One finding of a check: which file, what is wrong, and what the user should do about it."""

    severity: Severity
    location: str
    message: str
    fix: str = ""
    kind: str = ""  # the check that found it, for verify's count of problems by kind

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        text = f"{self.severity.upper()}: {self.location}: {self.message}"
        return f"{text} Fix: {self.fix}" if self.fix else text


class ProblemsFound(AutoSegError):
    """Raised when a check found errors; carries every problem so all of them can be shown at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        errors = sum(p.is_error for p in problems)
        lines = [str(p) for p in problems]
        super().__init__("\n".join([*lines, f"{errors} error(s) found."]))
