"""Text completions (`/v1/completions`, DeepSeek's FIM at `/beta/completions`) and embeddings
(`/v1/embeddings`): the request fields manxue reads, validated once; everything else rides
along untouched, as for chat.

Each model exposes what admission and the usage path read of any request (`model`, `stream`,
`max_tokens`, `max_completion_tokens`, `n`, `wants_usage_chunk`), so the same meter and the
same relay serve every endpoint.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from manxue.errors import InvalidParameters
from manxue.protocol.chat import StreamOptions, load_object, to_client_error

_WIRE = ConfigDict(extra="allow", strict=True)

Endpoint = Literal["chat", "completions", "fim", "embeddings"]
"""Which API a request is for: the providers map each to their own path."""

Prompt = str | list[str] | list[int] | list[list[int]]


class CompletionRequest(BaseModel):
    model_config = _WIRE

    model: str = Field(min_length=1)
    prompt: Prompt
    suffix: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=0)
    echo: bool | None = None
    logprobs: int | None = Field(None, ge=0, le=20)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=128)
    best_of: int | None = Field(None, ge=1, le=20)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None

    max_completion_tokens: None = None  # chat's name for max_tokens: not part of this API

    @property
    def wants_usage_chunk(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def prompts(self) -> int:
        """How many prompts the request sends (each is answered `n` times)."""
        p = self.prompt
        if isinstance(p, list) and p and isinstance(p[0], str | list):
            return len(p)
        return 1

    @property
    def choices(self) -> int:
        """Answers generated (each prompt `best_of` or `n` times): each is reserved."""
        return self.prompts * max(self.n or 1, self.best_of or 1)


class EmbeddingRequest(BaseModel):
    model_config = _WIRE

    model: str = Field(min_length=1)
    input: Prompt
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None

    stream: Literal[False] = False
    max_tokens: int = 0  # nothing is generated: only the input is billed
    max_completion_tokens: None = None
    n: None = None

    @property
    def wants_usage_chunk(self) -> bool:
        return False

    @property
    def choices(self) -> int:
        return 1


def parse_completion_request(body: bytes, fim: bool = False) -> tuple[CompletionRequest, dict[str, Any]]:
    raw = load_object(body, "model and prompt")
    try:
        req = CompletionRequest.model_validate(raw)
    except ValidationError as exc:
        raise to_client_error(exc) from None
    if req.max_tokens == 0 and not req.echo:
        raise InvalidParameters("max_tokens 0 asks for no answer; it is allowed only with "
                                "echo (to score the prompt)", param="max_tokens")
    if fim and req.suffix is None:
        raise InvalidParameters("a fill-in-the-middle request needs 'suffix' (the text after "
                                "the gap); without one, use /v1/completions", param="suffix")
    if req.prompt == [] or (req.prompt == "" and req.suffix is None):
        raise InvalidParameters("'prompt' is empty", param="prompt")
    return req, raw


def parse_embedding_request(body: bytes) -> tuple[EmbeddingRequest, dict[str, Any]]:
    raw = load_object(body, "model and input")
    try:
        req = EmbeddingRequest.model_validate(raw)
    except ValidationError as exc:
        raise to_client_error(exc) from None
    if req.input in ("", []) or (isinstance(req.input, list)
                                 and any(x in ("", []) for x in req.input)):
        raise InvalidParameters("'input' must not be empty (nor hold an empty string)",
                                param="input")
    return req, raw


def prompt_texts(raw: dict[str, Any]) -> list[str]:
    """The texts of a completion's prompt and suffix or an embedding's input, for counting
    tokens when an upstream reports no usage (token-id prompts count as their length)."""
    out: list[str] = []
    for name in ("prompt", "suffix", "input"):
        value = raw.get(name)
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            out.extend(v for v in value if isinstance(v, str))
    return out
