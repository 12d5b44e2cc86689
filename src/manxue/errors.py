"""One exception tree for the whole product, rendered as OpenAI error JSON in one place.

    ManxueError                      500 server_error
    ├── InvalidRequest               400 invalid_request_error   (malformed body, bad format)
    │   ├── BodyTooLarge             413 invalid_request_error
    │   └── ModelNotFound            404 invalid_request_error / model_not_found
    ├── InvalidParameters            422 invalid_request_error   (wrong type or value)
    ├── AuthenticationFailed         401 authentication_error
    ├── InsufficientBalance          402 insufficient_quota
    ├── PermissionDenied             403 permission_error
    │   └── PolicyViolation          403 ... when privacy forbids every deployment of a model
    ├── RateLimited                  429 rate_limit_error        (carries Retry-After)
    ├── ServiceUnavailable           503 service_unavailable     (no usable deployment)
    └── UpstreamError                status of the upstream (5xx or 4xx it returned); a 4xx
        │                            reaches the client as the upstream's own error object,
        │                            never with the deployment's name
        └── UpstreamTimeout          504 timeout

Status semantics follow DeepSeek's API (400, 401, 402, 422, 429, 500, 503), with 403 for what a
key may not do, 404 for what does not exist and 413 for a body too large.
"""

from __future__ import annotations

from typing import Any

import orjson


class ManxueError(Exception):
    """Base of every error a client can see."""

    status: int = 500
    type: str = "server_error"
    code: str | None = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after)))}


class InvalidRequest(ManxueError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class BodyTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"


class ModelNotFound(InvalidRequest):
    status = 404
    code = "model_not_found"


class InvalidParameters(ManxueError):
    status = 422
    type = "invalid_request_error"
    code = "invalid_parameters"


class AuthenticationFailed(ManxueError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class InsufficientBalance(ManxueError):
    status = 402
    type = "insufficient_quota"
    code = "insufficient_balance"


class PermissionDenied(ManxueError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class PolicyViolation(PermissionDenied):
    """The request may not go where the model is served (privacy = local, no local
    deployment): a setting of the key or the request, not a passing outage."""

    code = "policy_no_deployment"


class RateLimited(ManxueError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class ServiceUnavailable(ManxueError):
    status = 503
    type = "service_unavailable"
    code = "server_busy"


class UpstreamError(ManxueError):
    """An upstream answered with an error, or broke; `status` mirrors what it returned.

    `message` names the deployment and goes to the logs and the ledger only. A client sees
    `relay` (the upstream's own error object: message, type, param, code) when the upstream
    sent one, else a message that names no upstream.
    """

    type = "upstream_error"
    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        code: str | None = None,
        retry_after: float | None = None,
        relay: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, code=code, retry_after=retry_after)
        self.status = status
        self.relay = relay

    def to_dict(self) -> dict[str, Any]:
        if self.relay is not None:
            return {"error": self.relay}
        return {"error": {"message": f"the model's server answered HTTP {self.status}",
                          "type": self.type, "param": None, "code": self.code}}


class UpstreamTimeout(UpstreamError):
    code = "upstream_timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message, status=504)


class ConfigError(Exception):
    """The config file or the command line is wrong; raised at start, never while serving."""
