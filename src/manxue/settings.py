"""Typed settings: one TOML config file plus environment variables, validated once at start."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from manxue.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Strict):
    """Seconds. `first_byte` bounds the wait for the first token, `total` the whole answer."""

    connect: float = Field(5.0, gt=0)
    first_byte: float = Field(30.0, gt=0)
    total: float = Field(600.0, gt=0)


class DeploymentSettings(_Strict):
    name: str = Field(min_length=1)
    model: str = Field(min_length=1, description="public model name clients ask for")
    kind: Literal["openai", "local"] = "openai"
    base_url: str | None = None
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    upstream_model: str | None = None
    fim_path: str | None = Field(
        None, description="path of the upstream's fill-in-the-middle completions "
        "[default: /beta/completions beside /v1, as DeepSeek serves it]")
    priority: int = 0
    weight: float = Field(1.0, gt=0)
    timeouts: Timeouts = Timeouts()
    tags: dict[str, str] = {}
    cost_price_list: str | None = Field(None, description="what the upstream charges per token")
    cost_per_hour: Decimal | None = Field(
        None, ge=0, description="fixed cost per hour of a self-hosted engine (all its GPUs)")
    cost_currency: str | None = Field(
        None, min_length=1, description="currency of cost_per_hour [default: billing.currency]")
    # local engine only
    path: str | None = None
    options: dict[str, int | float | str | bool] = {}

    @model_validator(mode="after")
    def _check_kind(self) -> DeploymentSettings:
        if self.kind == "openai" and not self.base_url:
            raise ValueError(f"deployment {self.name!r}: kind 'openai' needs base_url")
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"deployment {self.name!r}: base_url must start with http:// or https://")
        return self

    @property
    def is_local(self) -> bool:
        return self.kind == "local"

    def resolved_api_key(self) -> str | None:
        """The key itself: inline, or read from the named environment variable."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_env:
            value = os.environ.get(self.api_key_env)
            if value is None:
                raise ConfigError(
                    f"deployment {self.name!r}: environment variable {self.api_key_env} is not set"
                )
            return value
        return None


class BreakerSettings(_Strict):
    failures: int = Field(5, ge=1, description="consecutive failures that open the breaker")
    cooldown: float = Field(30.0, gt=0, description="seconds open before a half-open probe")


class RouterSettings(_Strict):
    strategy: Literal["weighted", "least-latency", "least-busy"] = "weighted"
    max_attempts: int = Field(4, ge=1, description="tries per request, across all deployments")
    retries_per_deployment: int = Field(1, ge=0)
    backoff_base: float = Field(0.1, ge=0)
    backoff_max: float = Field(2.0, ge=0)
    retry_after_max: float = Field(10.0, ge=0, description="longest Retry-After honoured")
    hedge_after: float = Field(0.0, ge=0, description="seconds; 0 disables hedging")
    keepalive_interval: float = Field(
        10.0, gt=0, description="seconds between ': keep-alive' comments while a stream waits"
    )
    breaker: BreakerSettings = BreakerSettings()


class ServerSettings(_Strict):
    host: str = DEFAULT_HOST
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    offline: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    trusted_proxies: list[str] = Field(
        [], description="addresses or CIDR ranges of reverse proxies whose X-Forwarded-For is "
        "believed; a request with forwarding headers from any other peer counts as remote")
    drain_seconds: float = Field(
        0.0, ge=0, le=3600, description="after SIGTERM, seconds to keep serving while /ready "
        "answers 503 (draining), so load balancers stop sending new requests before the port "
        "closes; then running requests get 5 s more")
    insecure_open: bool = Field(
        False, description="serve a non-loopback address with no authentication at all "
        "([billing] enabled = false): anyone who reaches the port uses every model")
    public_metrics: bool = Field(
        False, description="/metrics and the details of /ready without the admin key on a "
        "non-loopback address")

    @model_validator(mode="after")
    def _check_proxies(self) -> ServerSettings:
        for entry in self.trusted_proxies:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"server.trusted_proxies: {entry!r} is not an IP address or "
                                 "CIDR range") from None
        return self


def default_data_dir() -> Path:
    """Where manxue keeps its SQLite database, journal and caches unless told otherwise."""
    env = os.environ.get("MANXUE_DATA_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "manxue"


class ModelSettings(_Strict):
    """What billing needs to know about a public model name."""

    tokenizer: str | None = Field(None, description="tokenizer for counting when upstreams give no usage")
    max_output_tokens: int = Field(8192, ge=1, description="reserved when a request sets no max_tokens")
    reasoning_budget: int = Field(0, ge=0, description="reasoning tokens beyond max_tokens (R1-era models)")


_DEFAULT_MODEL_SETTINGS = ModelSettings()


class BillingSettings(_Strict):
    enabled: bool = Field(True, description="keys, limits, balances and the ledger")
    price_lists: list[str] = Field([], description="TOML files with the operator's own price lists")
    flush_interval: float = Field(0.25, gt=0, description="seconds between ledger flushes to SQL")
    flush_batch: int = Field(5000, ge=1)
    journal_segment_mb: int = Field(
        8, ge=1, description="size of each journal file, allocated up front (a full disk shows "
        "when one is opened, not halfway through a row)")
    key_refresh_interval: float = Field(2.0, gt=0, description="seconds between key reloads from SQL")
    default_price_list: str | None = None
    currency: str = "USD"


class VerifySettings(_Strict):
    """Audits started through the HTTP API (`POST /v1/verify`)."""

    allow_hosts: list[str] = Field(
        [], description="host names, addresses or CIDR ranges that audits may reach although "
        "they are loopback, private or link-local (the operator's own internal endpoints)")
    max_running: int = Field(4, ge=1, description="audits running at once on this gateway")
    max_running_per_tenant: int = Field(1, ge=1, description="audits running at once per tenant")


class ResponsesSettings(_Strict):
    retention_hours: float = Field(
        720.0, gt=0, description="how long answers of the Responses API are kept for "
        "previous_response_id (requests with store: false are never kept)")


class Settings(_Strict):
    server: ServerSettings = ServerSettings()
    responses: ResponsesSettings = ResponsesSettings()
    verify: VerifySettings = VerifySettings()
    router: RouterSettings = RouterSettings()
    deployments: list[DeploymentSettings] = []
    data_dir: str | None = None
    database_url: str | None = None
    redis_url: str | None = None
    billing: BillingSettings = BillingSettings()
    models: dict[str, ModelSettings] = {}

    def resolved_data_dir(self) -> Path:
        return Path(self.data_dir).expanduser() if self.data_dir else default_data_dir()

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir() / 'manxue.db'}"

    def model_settings(self, model: str) -> ModelSettings:
        return self.models.get(model) or _DEFAULT_MODEL_SETTINGS

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        seen: set[str] = set()
        for dep in self.deployments:
            if dep.name in seen:
                raise ValueError(f"deployment name {dep.name!r} is used twice")
            seen.add(dep.name)
        return self

    def check_offline(self) -> None:
        """Refuse any deployment that would leave the machine when serving offline."""
        if not self.server.offline:
            return
        remote = [d.name for d in self.deployments if not d.is_local]
        if remote:
            raise ConfigError(
                "offline mode refuses non-local deployments: " + ", ".join(remote)
                + " (remove them or drop --offline)"
            )


# environment variables that replace a config key: credentials can come from a secret store
# (a Kubernetes Secret, a compose env file) while the file itself stays shareable
ENV_OVERRIDES = {"MANXUE_DATABASE_URL": "database_url", "MANXUE_REDIS_URL": "redis_url"}


def _with_env(raw: dict[str, object]) -> dict[str, object]:
    found = {key: os.environ[name] for name, key in ENV_OVERRIDES.items() if os.environ.get(name)}
    return {**raw, **found} if found else raw


def load_settings(path: str | Path | None) -> Settings:
    """Read and validate the config file; a missing path gives the defaults. MANXUE_DATABASE_URL
    and MANXUE_REDIS_URL, when set, replace the file's database_url and redis_url."""
    if path is None:
        return settings_from_dict({}, source="defaults")
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return settings_from_dict(raw, source=str(p))


def settings_from_dict(raw: dict[str, object], source: str = "config") -> Settings:
    try:
        return Settings.model_validate(_with_env(raw))
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err["loc"])
            lines.append(f"  {where}: {err['msg']}")
        raise ConfigError(f"{source} is invalid:\n" + "\n".join(lines)) from None
