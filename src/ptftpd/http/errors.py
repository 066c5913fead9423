"""The one error type of the HTTP core: a refusal that carries its status code.

Parser, target decoder and file opener all raise it, so the driver answers every refusal
the same way: the status and a one-line reason, then close or keep the connection.
"""

from __future__ import annotations

from http import HTTPStatus


class HttpError(Exception):
    """A request refused with `status` (4xx/5xx); `message` is a one-line reason for the log."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def phrase(self) -> str:
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return "Error"

    def __str__(self) -> str:
        return f"{self.status} {self.phrase}: {self.message}"
