"""Collect the warnings logged while a subject runs, for the report's "Errors and warnings"."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

#: Loggers whose warnings the report lists (nipype's children propagate to ``nipype``).
LOGGERS = ('aslproc', 'nipype')


class WarningCollector(logging.Handler):
    """A handler that keeps WARNING (and worse) records of some loggers in a list.

    Records from nodes run in worker processes (``--nprocs`` > 1) stay in those processes'
    logs; the main process's warnings (validation, metadata, workflow engine) are kept.

    Examples
    --------
    >>> c = WarningCollector(['aslproc.example']).start()
    >>> logging.getLogger('aslproc.example').warning('M0 looks %s', 'low')
    >>> logging.getLogger('aslproc.example').info('not kept')
    >>> c.stop()
    [{'level': 'WARNING', 'source': 'aslproc.example', 'message': 'M0 looks low'}]
    """

    def __init__(self, loggers=LOGGERS, level: int = logging.WARNING, limit: int = 200):
        super().__init__(level)
        self.loggers = tuple(loggers)
        self.limit = limit
        self.records: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a badly formatted record is still worth showing
            message = str(record.msg)
        entry = {'level': record.levelname, 'source': record.name, 'message': message}
        if entry not in self.records and len(self.records) < self.limit:
            self.records.append(entry)

    def start(self) -> WarningCollector:
        """Attach to the loggers; returns itself."""
        for name in self.loggers:
            logging.getLogger(name).addHandler(self)
        return self

    def stop(self) -> list[dict]:
        """Detach and return what was collected."""
        for name in self.loggers:
            logging.getLogger(name).removeHandler(self)
        return list(self.records)
