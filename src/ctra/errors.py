"""The one exception type for input a user must fix.

Every check that can fail on user data raises :class:`InputError` with messages that name the file,
the row or column and the problem. The command line prints these messages without a traceback and
exits non-zero, so a bad run never looks like a crash of ours nor like a finished analysis.
"""

from __future__ import annotations


class InputError(Exception):
    """One or more problems with user input, each a full sentence naming file, place and problem."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return self.problems[0]
        listed = "\n".join(f"  - {p}" for p in self.problems)
        return f"{len(self.problems)} problems found:\n{listed}"


class ProblemList:
    """Collects problems so that a validation step can report all of them at once."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, message: str) -> None:
        if message not in self.problems:  # two checks may word the same problem identically
            self.problems.append(message)

    def raise_if_any(self) -> None:
        if self.problems:
            raise InputError(self.problems)
