"""Backoff between retries: exponential with jitter, never shorter than the server's ``Retry-After``."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, *, base: float, cap: float = 60.0, retry_after: float | None = None,
                  rng: random.Random | None = None, max_retry_after: float = 600.0) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): ``d = min(cap, base * 2**(attempt-1))``, drawn
    uniformly from [d/2, d] ("equal jitter", so concurrent clients spread out but never retry at once), and at
    least ``retry_after`` (capped at ``max_retry_after``)."""
    rng = rng or random
    ceiling = min(cap, base * 2 ** (attempt - 1))
    delay = ceiling / 2 + rng.uniform(0.0, ceiling / 2)
    if retry_after is not None:
        delay = max(delay, min(float(retry_after), max_retry_after))
    return delay


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from datetime import datetime, timezone
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
