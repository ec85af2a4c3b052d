"""Counting and throttling by reason, without ROS: every skipped frame and refused request is
counted under its reason (for /diagnostics), and logged at most once per period *per reason*, with
the number of the same ones left unlogged since (rclpy's own throttle is per call line, so one
reason's flood hid every other reason behind it)."""

from __future__ import annotations

import collections
import time


class ReasonLog:
    def __init__(self, period_s: float, clock=time.monotonic):
        self.period_s = period_s
        self._clock = clock
        self.counts: collections.Counter[str] = collections.Counter()
        self._last_logged: dict[str, float] = {}
        self._unlogged: collections.Counter[str] = collections.Counter()

    def record(self, reason: str, count: int = 1) -> int | None:
        """Count ``count`` occurrences; returns None when it should not be logged now, else how many
        of the same reason went unlogged before (0 for the first)."""
        self.counts[reason] += count
        now = self._clock()
        last = self._last_logged.get(reason)
        if last is not None and now - last < self.period_s:
            self._unlogged[reason] += count
            return None
        self._last_logged[reason] = now
        return self._unlogged.pop(reason, 0)

    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """``reason=count`` pairs, most frequent first (empty when nothing was counted)."""
        return ",".join(f"{k}={v}" for k, v in self.counts.most_common())


def suffix(unlogged: int) -> str:
    return f" ({unlogged} more of these since the last message)" if unlogged else ""
