"""One exception tree for the whole product, rendered as OpenAI error JSON in one place.

Every exception class defined in src/manxue is drawn here (tests/test_errors.py checks it);
the ones not in this module name theirs.

    ManxueError                      500 server_error            (what a client can see)
    ├── InvalidRequest               400 invalid_request_error   (malformed body, bad format)
    │   ├── BodyTooLarge             413 invalid_request_error / request_too_large
    │   └── NotFound                 404 invalid_request_error / not_found
    │       ├── ModelNotFound            model_not_found         (a model, served or planned)
    │       ├── RouteNotFound            not_found               (no route for the path)
    │       ├── DeploymentNotFound       deployment_not_found    (admin: by name)
    │       ├── KeyNotFound              key_not_found           (an API key by id or prefix)
    │       ├── TenantNotFound           tenant_not_found
    │       ├── ActionNotFound           not_found               (admin: POST .../{action})
    │       ├── AssetNotFound            not_found               (a web page's static file)
    │       ├── RequestNotFound          request_not_found       (a finished request's row)
    │       ├── JobNotFound              verify_job_not_found    (a verify job)
    │       └── ResponseNotFound         response_not_found      (a stored Responses answer)
    ├── InvalidParameters            422 invalid_request_error   (wrong type or value)
    │   ├── PriceListNotFound            price_list_not_found    (manxue.pricing.errors)
    │   └── PriceNotFound                price_not_found         (manxue.pricing.errors)
    ├── AuthenticationFailed         401 authentication_error
    ├── InsufficientBalance          402 insufficient_quota
    ├── PermissionDenied             403 permission_error
    │   ├── PolicyViolation              privacy_local_unavailable (privacy forbids every
    │   │                                                      deployment of the model)
    │   └── TargetForbidden              verify_target_forbidden (manxue.verify.netguard)
    ├── RateLimited                  429 rate_limit_error        (carries Retry-After)
    ├── ServiceUnavailable           503 service_unavailable     (no usable deployment)
    └── UpstreamError                status of the upstream (5xx or 4xx it returned); a 4xx
        │                            reaches the client as the upstream's own error object,
        │                            never with the deployment's name
        └── UpstreamTimeout          504 upstream_error / upstream_timeout

    Never shown to a client as such:
    ConfigError                      the config file or command line is wrong (at start)
    DeploymentExists                 (manxue.gateway.dynamic) a deployment name is taken
    CannotListen                     (manxue.server.run) the server cannot bind its address
    RegistrationError                (manxue.engine_launch.register) engine not registered
    EngineFailed                     (manxue.engine_launch.supervisor) an engine process died
    BudgetExhausted                  (manxue.verify.budget) an audit spent its requests
    ConnectionError                  (builtin) ─┬── ConnectError    (manxue.providers.http1)
                                                └── BrokenResponse  (manxue.providers.http1)
    TimeoutError                     (builtin) ──── TotalTimeout    (manxue.providers.http1)
        The transport's three become UpstreamError / UpstreamTimeout in one place:
        manxue.providers.openai_compat._gateway_error.

Status semantics follow DeepSeek's API (400, 401, 402, 422, 429, 500, 503), with 403 for what a
key may not do, 404 for what does not exist and 413 for a body too large. A NotFound keeps the
type invalid_request_error; its subclass says what was not found (and sets the code).
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


class NotFound(InvalidRequest):
    """Something named in the request does not exist (or is not the caller's to see)."""

    status = 404
    code = "not_found"


class ModelNotFound(NotFound):
    """A model: not served here, not the key's, or unknown to the planner's catalog."""

    code = "model_not_found"


class RouteNotFound(NotFound):
    """No route for the method and path."""


class DeploymentNotFound(NotFound):
    code = "deployment_not_found"


class KeyNotFound(NotFound):
    code = "key_not_found"


class TenantNotFound(NotFound):
    code = "tenant_not_found"


class ActionNotFound(NotFound):
    """An admin action (path segment) that does not exist."""


class AssetNotFound(NotFound):
    """A static file of the web pages, absent from this release."""


class RequestNotFound(NotFound):
    """A finished request (a ledger row) the caller may read."""

    code = "request_not_found"


class JobNotFound(NotFound):
    """A verify job: unknown, dropped from memory, or someone else's."""

    code = "verify_job_not_found"


class ResponseNotFound(NotFound):
    """A stored answer of the Responses API: unknown, expired, not stored, or another key's."""

    code = "response_not_found"


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

    code = "privacy_local_unavailable"


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
