"""Errors the store raises: a stable code, a one-line message and a hint saying how to fix.

The daemon turns these into protocol errors; the store imports nothing of the daemon.
"""

from __future__ import annotations


class StoreError(Exception):
    code = "invalid"

    def __init__(self, message: str, hint: str = "", code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code:
            self.code = code


class NotFoundError(StoreError):
    code = "not_found"


class InvalidError(StoreError):
    code = "invalid"
