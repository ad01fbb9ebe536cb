"""
``concurrency="auto"`` against a *rate* limit: how many requests per second may start, found from refusals (AIMD on
the rate, as the limiter does on the number in flight).

An API gateway in front of Rehook (nginx ``limit_req``, a cloud gateway's throttling) refuses requests over so many
per second, whatever the number in flight. Fewer requests in flight then help only once a round trip is long
enough: on a fast network even one connection can send faster than the limit, so cutting concurrency alone ends
at 1 with refusals still coming. `_concurrency.Limiter` engages the pacer when a request sent with at most half as
many in flight as accepted ones had is refused (a concurrency limit cannot refuse that); from then on:

- requests start at most ``rate`` per second, evenly spaced (each takes the next free slot);
- the rate starts at `BACKOFF` times the rate of answers Rehook accepted over the last second;
- a refusal (429 or 503) of a request that started after the last cut, at least 20 requests' time after it, sets
  the rate to `BACKOFF` times the lower of the rate and the rate of accepted answers;
- every accepted answer adds `GROWTH` requests per second (the rate grows 2% per second at any scale), so the
  gateway sees one refusal every few seconds;
- after `IDLE_AFTER` seconds without a refusal the pacer stands down (the limit may have been lifted).
"""

from __future__ import annotations

from collections import deque

__all__ = ["BACKOFF", "GROWTH", "IDLE_AFTER", "Pacer"]

BACKOFF = 0.9
GROWTH = 0.02
IDLE_AFTER = 30.0
_WINDOW = 1.0  # seconds of accepted answers the rate is measured over
_FLOOR = 1.0  # requests per second: never slower
# Cuts at most once per this many requests' time at the current rate: a gateway's bucket takes a moment to drain
# after a cut, and the refusals meanwhile say nothing of the new rate.
_SPACING = 20


class Pacer:
    """
    The rate requests may start at, once engaged (used from one event loop; times are the loop's clock).
    """

    def __init__(self) -> None:
        self.rate: float | None = None  # None: not pacing
        self._next = 0.0  # when the next request may start
        self._cut_at = float("-inf")
        self._answers: deque[float] = deque()  # when accepted answers came, over the last _WINDOW

    @property
    def engaged(self) -> bool:
        return self.rate is not None

    def engage(self, now: float) -> None:
        """
        Start pacing at `BACKOFF` times the rate of accepted answers.
        """
        if self.rate is None:
            self.rate = max(_FLOOR, BACKOFF * self.accepted_rate(now))
            self._cut_at = now
            self._next = now

    def slot(self, now: float) -> float:
        """
        Take the next free slot: seconds to wait before sending.
        """
        rate = self.rate
        if rate is None:
            return 0.0
        start = max(now, self._next)
        self._next = start + 1.0 / rate
        return start - now

    def accepted(self, now: float) -> None:
        """
        Rehook accepted a request at ``now``.
        """
        answers = self._answers
        answers.append(now)
        while answers[0] < now - _WINDOW:
            answers.popleft()
        if self.rate is not None:
            if now - self._cut_at > IDLE_AFTER:
                self.rate = None
            else:
                self.rate += GROWTH

    def refused(self, started: float, now: float) -> bool:
        """
        A request started at ``started`` was refused at ``now``; whether that cut the rate.
        """
        if self.rate is None or started < self._cut_at or now - self._cut_at < _SPACING / self.rate:
            return False  # not pacing, or too soon after the last cut to say anything of the current rate
        self._cut_at = now
        self.rate = max(_FLOOR, BACKOFF * min(self.rate, max(self.accepted_rate(now), _FLOOR)))
        return True

    def accepted_rate(self, now: float) -> float:
        """
        Accepted answers per second over the last second (or since the first one, if sooner).
        """
        answers = self._answers
        while answers and answers[0] < now - _WINDOW:
            answers.popleft()
        if len(answers) < 2:
            return 0.0
        return len(answers) / max(now - answers[0], 1e-3)
