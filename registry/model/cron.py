"""Cron expressions as Harbor's schedules write them: 5 fields, or 6 with seconds first; UTC."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


class CronError(ValueError):
    """A cron expression that cannot be used: the message names the bad field."""


_CRON_ALIASES = {"@yearly": "0 0 0 1 1 *", "@annually": "0 0 0 1 1 *", "@monthly": "0 0 0 1 * *",
                 "@weekly": "0 0 0 * * 0", "@daily": "0 0 0 * * *", "@midnight": "0 0 0 * * *",
                 "@hourly": "0 0 * * * *"}
_CRON_RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_NAMES = ("second", "minute", "hour", "day of month", "month", "day of week")


@dataclass(frozen=True)
class Cron:
    """A cron expression: 5 fields (minute hour dom month dow) or 6 (seconds first, as Harbor's); UTC."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month is "*"
    any_weekday: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        """Parse `text`; CronError names the bad field."""
        fields = _CRON_ALIASES.get(text.strip(), text).split()
        if len(fields) == 5:
            fields = ["0", *fields]
        if len(fields) != 6:
            raise CronError(f"cron {text[:100]!r}: 5 or 6 fields")
        sets = [_cron_field(f, lo, hi, name)
                for f, (lo, hi), name in zip(fields, _CRON_RANGES, _CRON_NAMES, strict=True)]
        weekdays = frozenset(d % 7 for d in sets[5])
        cron = cls(sets[0], sets[1], sets[2], sets[3], sets[4], weekdays, fields[3] in ("*", "?"),
                   fields[5] in ("*", "?"))
        if cron.next_after(time.time()) is None:
            raise CronError(f"cron {text[:100]!r}: never fires")
        return cron

    def _day_ok(self, dt: datetime) -> bool:
        dom, dow = dt.day in self.days, (dt.weekday() + 1) % 7 in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return dow
        if self.any_weekday:
            return dom
        return dom or dow  # both restricted: either matches, as cron does

    def next_after(self, t: float) -> float | None:
        """The first time after `t` the expression fires (None if not within 5 years)."""
        dt = datetime.fromtimestamp(int(t) + 1, UTC)
        limit = dt + timedelta(days=5 * 366)
        while dt < limit:
            if dt.month not in self.months:
                dt = (dt.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0, second=0)
            elif not self._day_ok(dt):
                dt = (dt + timedelta(days=1)).replace(hour=0, minute=0, second=0)
            elif dt.hour not in self.hours:
                dt = (dt + timedelta(hours=1)).replace(minute=0, second=0)
            elif dt.minute not in self.minutes:
                dt = (dt + timedelta(minutes=1)).replace(second=0)
            elif dt.second not in self.seconds:
                dt += timedelta(seconds=1)
            else:
                return dt.timestamp()
        return None


def _cron_field(text: str, lo: int, hi: int, name: str) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        m = re.fullmatch(r"(\*|\?|\d+)(?:-(\d+))?(?:/(\d+))?", part)
        if not m:
            raise CronError(f"cron {name} {part[:20]!r}: a number, a range a-b, * or a step /n")
        start, end, step = m.groups()
        first = lo if start in ("*", "?") else int(start)
        last = hi if start in ("*", "?") or (end is None and step) else int(end or start)
        if not lo <= first <= last <= hi or (step is not None and int(step) < 1):
            raise CronError(f"cron {name} {part[:20]!r}: out of {lo}-{hi}")
        out.update(range(first, last + 1, int(step or 1)))
    return frozenset(out)
