"""The error answers every route documents in the OpenAPI spec, with their models.

Every route lists what it can answer besides success: 400 (a body or request FastAPI cannot
parse), 401 and 403 (credentials), 422 (an invalid parameter or body: FastAPI's
`HTTPValidationError` or a `Problem` whose `detail` says which), 503 (the warehouse is unavailable
or timed out), 500 (an unexpected error, with a reference to the service log).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, RootModel


class Problem(BaseModel):
    """An error answer: `detail` says what is wrong and what to do."""

    detail: str


class ValidationError(BaseModel):
    """One invalid input, as FastAPI reports it."""

    model_config = ConfigDict(title="ValidationError")
    loc: list[str | int]
    msg: str
    type: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class HTTPValidationError(BaseModel):
    """FastAPI's answer to parameters or a body that do not match the spec."""

    detail: list[ValidationError]


class Invalid(RootModel[HTTPValidationError | Problem]):
    """422: FastAPI's validation errors, or a `detail` naming the parameter and the limit."""


Answers = dict[int | str, dict[str, Any]]

BAD_REQUEST: Answers = {400: {"model": Problem, "description": "The request cannot be parsed."}}
AUTH: Answers = {
    401: {"model": Problem, "description": "Missing or wrong token."},
    403: {"model": Problem, "description": "The scope's token is not configured on the server."},
}
INVALID: Answers = {
    422: {"model": Invalid, "description": "A parameter is invalid; `detail` says which."}
}
SERVER: Answers = {
    500: {"model": Problem, "description": "Unexpected error; `detail` has a log reference."},
    503: {
        "model": Problem,
        "description": "The warehouse is unavailable or timed out; retry later.",
    },
}
READ_ANSWERS: Answers = {**BAD_REQUEST, **AUTH, **INVALID, **SERVER}

__all__ = [
    "AUTH",
    "BAD_REQUEST",
    "INVALID",
    "READ_ANSWERS",
    "SERVER",
    "HTTPValidationError",
    "Invalid",
    "Problem",
    "ValidationError",
]
