"""Times as images and containers record them: RFC 3339, with up to nanoseconds (a module of its own so that
listings parse them without importing the image records)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime


def now_rfc3339() -> str:
    """The current UTC time in the RFC 3339 form image configs use."""
    from datetime import UTC, datetime  # (here: `run` reads image records, and times of none)

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> datetime | None:
    """Parse an RFC 3339 timestamp with optional nanoseconds; None when absent or malformed."""
    if not text:
        return None
    t = text.strip().replace("Z", "+00:00")
    if "." in t:
        head, _, rest = t.partition(".")
        frac = re.split(r"\D", rest, maxsplit=1)[0]  # the leading digits
        t = f"{head}.{frac[:6].ljust(6, '0')}{rest[len(frac):]}"
    from datetime import datetime

    try:
        return datetime.fromisoformat(t)
    except ValueError:
        return None
