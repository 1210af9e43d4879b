"""The access log: one line per request (method, URL template, status, time), buffered.

It says what the server did, never for whom: the route template (``/Patient/{id}``), not the
URL, so no identifier or query value reaches the log (personal data is in the audit trail).

Python's logging builds a LogRecord, formats it (time included) and writes and flushes the
stream for every line: about a third of a read's cost at full load. Here a line is one f-string
appended to a list; the list is written in one ``write`` at most every 100 ms (or every 512
lines) and at shutdown, in the format of the other log lines. It is on when the
``fhir_server.access`` logger is enabled for INFO (the default level), off with
``--log-level warning``. A crash can lose the last 100 ms of access lines, never an audit
record (the audit trail is durable before each answer).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import TextIO

LOGGER = "fhir_server.access"
FLUSH_SECONDS = 0.1
FLUSH_LINES = 512


class AccessLog:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.enabled = logging.getLogger(LOGGER).isEnabledFor(logging.INFO)
        self.lines: list[str] = []
        self._scheduled: asyncio.TimerHandle | None = None
        self._second = -1
        self._stamp = ""

    def _now(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._stamp},{int((now - second) * 1000):03d}"

    def request(self, method: str, template: str, status: int, started: float) -> None:
        if not self.enabled:
            return
        elapsed = (time.perf_counter() - started) * 1000
        self.lines.append(
            f"{self._now()} INFO {LOGGER}: {method} {template} -> {status} ({elapsed:.1f} ms)\n"
        )
        if len(self.lines) >= FLUSH_LINES:
            self.flush()
        elif self._scheduled is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._scheduled = loop.call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if not self.lines:
            return
        text, self.lines = "".join(self.lines), []
        stream = self.stream or sys.stderr
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # a closed stream must never break a request
            pass
