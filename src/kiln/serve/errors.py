"""Errors in OpenAI's shape, so every OpenAI client shows them as it shows OpenAI's own.

`{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}` with the HTTP status OpenAI uses:
400 invalid parameter (named in `param`), 401 bad API key, 404 unknown model or route, 413 request too
large, 429 queue full, 500 a bug (the message says so, the traceback goes to the server log).
"""

from __future__ import annotations

from typing import Any

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "server_error",
}


class APIError(Exception):
    """Raised anywhere in a request; the app's handler (handlers.py) turns it into the JSON body above.

    Plain Python, no FastAPI: the request checks in validate.py raise it and are unit-testable on their own.
    """

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, param=self.param, code=self.code)


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    kind = TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def bad_param(param: str, message: str) -> APIError:
    return APIError(400, message, param=param, code="invalid_value")
