"""JSON from bytes another party wrote (a leader's published objects, a checkpoint manifest):
every way those bytes can be bad raises the caller's typed error, naming the object.

`json.loads` alone lets a deeply nested document raise RecursionError and accepts NaN and
Infinity (and `1e400`, a float inf), whose `int()` raises OverflowError; `int()` also takes
floats and booleans. `loads_untrusted` and `json_int` close those doors.
"""

from __future__ import annotations

import json
from typing import Any


class UntrustedJSONError(ValueError):
    """Malformed JSON from another party (the default error; callers pass their own)."""


def loads_untrusted(data: bytes | str, what: str, *, error: type[Exception] = UntrustedJSONError) -> Any:
    """The parsed document, or `error(f"{what}: ...")` for bad UTF-8, bad JSON, nesting too deep
    for the parser, or a non-standard constant (NaN, Infinity)."""

    def reject_constant(name: str) -> None:
        raise error(f"{what}: non-standard JSON constant {name}")

    try:
        return json.loads(data, parse_constant=reject_constant)
    except error:
        raise
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError too
        raise error(f"{what}: not JSON ({type(err).__name__})") from None


def json_int(value: Any, what: str, *, error: type[Exception] = UntrustedJSONError,
             minimum: int | None = None) -> int:
    """`value` if it is a JSON integer (not a bool, not a float) >= `minimum`, else `error`."""
    if type(value) is not int:
        raise error(f"{what} is {str(value)[:40]!r}, not an integer")
    if minimum is not None and value < minimum:
        raise error(f"{what} is {value}, below {minimum}")
    return value


def json_int_list(value: Any, what: str, *, error: type[Exception] = UntrustedJSONError,
                  minimum: int | None = None) -> list[int]:
    """A JSON array of integers (each checked as `json_int`)."""
    if not isinstance(value, list):
        raise error(f"{what} is not a list")
    return [json_int(v, f"{what}[{i}]", error=error, minimum=minimum) for i, v in enumerate(value)]
