"""What PostgreSQL cannot store of a value sent in: the one check behind every text and JSON value a
request, a file or a form hands over (a document's id, text and metadata, a collection's extra_params)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

# Lone surrogates: valid in a Python string, refused by UTF-8 and by PostgreSQL in text and jsonb alike.
_SURROGATE = re.compile("[\ud800-\udfff]")

NUL = "contains NUL (\\u0000) characters, which PostgreSQL cannot store; strip them"
SURROGATE = "is not valid Unicode (lone surrogate escapes such as \\ud800); send UTF-8 text"
# Python's json reads NaN, Infinity and 1e400 (as inf); jsonb refuses them all.
NOT_FINITE = "holds a number JSON cannot carry (NaN, Infinity, or past ±1.8e308 such as 1e400); send a finite number"


def unstorable(value: Any) -> str | None:
    """Why `value` (a string, or JSON: keys and values alike) cannot be stored as PostgreSQL text or jsonb,
    worded to follow its name ("metadata contains NUL ..."); None when it can. Walked without recursion."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return NUL
            if _SURROGATE.search(item):
                return SURROGATE
        elif isinstance(item, float):
            if not math.isfinite(item):
                return NOT_FINITE
        elif isinstance(item, Mapping):
            pending += [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple)):
            pending += item
    return None
