"""Options as the command line gives them (``KEY=VALUE``) and the values each method option allows.

A method's options are its builder's keyword arguments (``methods.method_options``); ``RULES`` says
which values each allows, so that ``--option C=-5`` is refused before any work instead of recording
chance accuracy. Grids and commands (``sweep``, ``curves``, ``cli``) share the parsing helpers here,
so that no library module imports the command line.
Taught in: chapter 05 (baselines).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import dataclass
from typing import Callable

#: What a command reports as its message and exit status 2: bad input, missing files, data or weights.
#: Any other exception is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, RuntimeError)


def print_json(obj) -> None:
    """The one JSON object a ``--json`` command prints as its last line."""
    print(json.dumps(obj, default=float))


def table_unless_json(as_json: bool):
    """A context in which a command prints its human-readable table, dropped under ``--json``, so
    that stdout then holds the one JSON object alone (errors and warnings still go to stderr)."""
    return contextlib.redirect_stdout(io.StringIO()) if as_json else contextlib.nullcontext()


def parse_options(pairs, flag: str = "--option") -> dict:
    """``["alpha=0.5", "n_ctx=4", "ctx_init=a photo of a"]`` -> typed keyword options (JSON values,
    else strings); ``flag`` names the command-line flag they came from, for the message."""
    out = {}
    example = "=[V1,V2,...]" if flag == "--select" else "=VALUE"
    shape = "key=[V1,V2,...]" if flag == "--select" else "key=value"
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"{flag} takes {shape}, got {pair!r} (e.g. {flag} {pair}{example})")
        key, value = pair.split("=", 1)
        if not key:
            raise ValueError(f"{flag} {pair!r} names no option before '=' (e.g. {flag} NAME{example})")
        try:
            out[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.replace("-", "_")] = value
    return out


def add_skip_bad_images(p) -> None:
    """``--skip-bad-images``, for every command that reads a dataset's images."""
    p.add_argument("--skip-bad-images", action="store_true",
                   help="leave unreadable images out (listed in each record) instead of stopping")


@dataclass(frozen=True)
class Rule:
    """The values one option allows: ``ok(value)``, and ``what`` says them in words."""

    what: str                            # e.g. "a number > 0"
    ok: Callable[[object], bool]         # whether a value is allowed


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False,
           none: str = "") -> Rule:
    """A finite number in a range (``none``: what ``null`` means, when it is allowed)."""
    low = f"> {lo}" if lo_open else f">= {lo}"
    high = f"< {hi}" if hi_open else f"<= {hi}"
    ranged = " and ".join(p for p, b in ((low, lo), (high, hi)) if b is not None)
    what = f"a number {ranged}".rstrip() + (f" (or null: {none})" if none else "")

    def ok(x) -> bool:
        if x is None:
            return bool(none)
        return _is_number(x) and (lo is None or (x > lo if lo_open else x >= lo)) and \
            (hi is None or (x < hi if hi_open else x <= hi))
    return Rule(what, ok)


def whole(lo: int) -> Rule:
    """A whole number >= ``lo``."""
    return Rule(f"a whole number >= {lo}", lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= lo)


def flag() -> Rule:
    return Rule("true or false", lambda x: isinstance(x, bool))


def choice(*values: str) -> Rule:
    return Rule(" or ".join(map(repr, values)), lambda x: x in values)


def text(none: str = "") -> Rule:
    return Rule("a string" + (f" (or null: {none})" if none else ""),
                lambda x: isinstance(x, str) or (x is None and bool(none)))


def numbers(item: Rule, n: int | None = None, none: str = "") -> Rule:
    """A JSON list of ``n`` values (any number of at least one when ``n`` is None), each ``item``."""
    size = f"{n}" if n else "one or more"
    what = f"a list of {size} values, each {item.what}" + (f" (or null: {none})" if none else "")

    def ok(x) -> bool:
        if x is None:
            return bool(none)
        return isinstance(x, (list, tuple)) and (len(x) == n if n else len(x) >= 1) and all(map(item.ok, x))
    return Rule(what, ok)


def check_option(method: str, key: str, value, rule: Rule) -> None:
    """A one-line ``ValueError`` naming the option and what it allows, unless ``value`` is allowed."""
    if not rule.ok(value):
        shown = value if isinstance(value, str) else json.dumps(value)     # as typed: C=abc, C=-5, C=NaN
        raise ValueError(f"option {key}={shown} of method {method!r} must be {rule.what}")
