"""A problem with one field of one task, before the runner knows which file and row.

Jobs report problems as ``FieldProblem``; the manifest layer adds file and row, so a
user reads one complete sentence per problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldProblem:
    field: str
    value: Any
    rule: str
    # The API's error reason for this problem, where it has one (the simulator answers it).
    code: str = "INVALID_REQUEST_BODY"
