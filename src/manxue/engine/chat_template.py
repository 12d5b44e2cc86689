"""Render chat messages into a prompt with a Jinja chat template, as Hugging Face does.

The template comes from the GGUF metadata key `tokenizer.chat_template` when the file has one.
A file without one gets the named template its architecture or vocabulary identifies
(`detect`: gemma, llama3, deepseek, chatml for Qwen and files whose vocabulary has ChatML's
markers); a file that identifies none has no chat template at all: chat requests are refused
with a 422 saying how to pass `chat_template`, while text completions and embeddings still work.

A deployment can also name a template (NAMED_TEMPLATES), give Jinja source, or a file path.
Each named template's end-of-turn marker (END_OF_TURN) always ends generation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from manxue.errors import ConfigError, InvalidParameters, InvalidRequest

GENERIC_CHATML = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

_LLAMA3 = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)

_DEEPSEEK = (
    "{{- bos_token -}}"
    "{%- for message in messages if message['role'] == 'system' -%}{{- message['content'] -}}"
    "{%- endfor -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}{{- '<｜User｜>' + message['content'] -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- '<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<｜Assistant｜>' -}}{%- endif -%}"
)

_GEMMA = (
    "{{- bos_token -}}"
    "{%- set ns = namespace(system='') -%}"
    "{%- for message in messages if message['role'] == 'system' -%}"
    "{%- set ns.system = ns.system + message['content'] + '\\n\\n' -%}{%- endfor -%}"
    "{%- for message in messages if message['role'] != 'system' -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else 'user' -%}"
    "{{- '<start_of_turn>' + role + '\\n' -}}"
    "{%- if loop.first -%}{{- ns.system -}}{%- endif -%}"
    "{{- message['content'] | trim + '<end_of_turn>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}"
)

_NO_TEMPLATE = "{{- raise_exception('no chat template') -}}"

NAMED_TEMPLATES: dict[str, str] = {
    "generic": GENERIC_CHATML,
    "chatml": GENERIC_CHATML,
    "llama3": _LLAMA3,
    "deepseek": _DEEPSEEK,
    "gemma": _GEMMA,
}


END_OF_TURN: dict[str, str] = {
    "generic": "<|im_end|>", "chatml": "<|im_end|>", "llama3": "<|eot_id|>",
    "deepseek": "<｜end▁of▁sentence｜>", "gemma": "<end_of_turn>",
}
"""The marker that closes an assistant turn in each named template."""


def detect(architecture: str, metadata: Mapping[str, str], has_token: Any) -> str | None:
    """The named template a GGUF without one needs, from its architecture and vocabulary
    (`has_token(text)`: whether the text is one token of the vocabulary); None: unknown."""
    arch = architecture.lower()
    if arch.startswith("gemma"):
        return "gemma"
    if arch.startswith("deepseek") or has_token("<｜end▁of▁sentence｜>"):
        return "deepseek"
    if has_token("<|eot_id|>") and has_token("<|start_header_id|>"):
        return "llama3"
    if arch.startswith("qwen") or has_token("<|im_start|>"):
        return "chatml"
    return None


def _raise(message: str) -> NoReturn:
    raise jinja2.TemplateError(message)


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False,
            sort_keys: bool = False) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys,
                      default=_jsonable)


def _jsonable(value: Any) -> Any:
    """What `json` cannot write but a template may hand `tojson`: a mapping of another type,
    or a filter's generator (`tools | map(attribute='function')`), written as a list."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}…{% endgeneration %}`, which Hugging Face's templates put around the
    assistant's text (for training masks): the body renders as it is."""

    tags = {"generation"}  # noqa: RUF012 (jinja's own class attribute)

    def parse(self, parser: Any) -> list[Any]:
        next(parser.stream)
        body: list[Any] = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return body


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols", _GenerationBlock])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = _strftime_now
    return env


class ChatTemplate:
    """A compiled chat template; `kind` says where it came from ("gguf", "generic", a name)."""

    def __init__(self, source: str, kind: str, *, bos_token: str = "", eos_token: str = "") -> None:
        self.source = source
        self.kind = kind
        self.bos_token = bos_token
        self.eos_token = eos_token
        try:
            self._template = _environment().from_string(source)
        except jinja2.TemplateError as exc:
            raise ConfigError(f"chat template ({kind}) does not compile: {exc}") from None

    @classmethod
    def resolve(cls, choice: str, gguf_template: str | None, *, bos_token: str = "",
                eos_token: str = "", detected: str | None = None) -> ChatTemplate:
        """`choice`: "auto"/"gguf" (the file's own, else the `detected` name, else none), a
        name, Jinja source, a path."""
        tokens = {"bos_token": bos_token, "eos_token": eos_token}
        key = choice.strip()
        if key in ("", "auto", "gguf"):
            if gguf_template:
                return cls(gguf_template, "gguf", **tokens)
            if key == "gguf":
                raise ConfigError("chat_template 'gguf': the model file has no chat template")
            if detected is not None:
                return cls(NAMED_TEMPLATES[detected], detected, **tokens)
            return cls(_NO_TEMPLATE, "none", **tokens)
        if key in NAMED_TEMPLATES:
            return cls(NAMED_TEMPLATES[key], key, **tokens)
        if "{{" in key or "{%" in key:
            return cls(choice, "custom", **tokens)
        path = Path(key).expanduser()
        if path.is_file():
            return cls(path.read_text(encoding="utf-8"), f"file:{path}", **tokens)
        raise ConfigError(
            f"chat_template {choice!r} is neither a known name ({', '.join(NAMED_TEMPLATES)}), "
            "Jinja source, nor a readable file"
        )

    def render(self, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool = True,
               **extra: Any) -> str:
        if self.kind == "none":
            raise InvalidParameters(
                "this model's GGUF has no chat template and its architecture does not name one, "
                "so it cannot answer chat requests: set the deployment's chat_template option "
                f"(a name: {', '.join(NAMED_TEMPLATES)}; Jinja source; or a file), e.g. "
                "`--chat-template chatml`, or use /v1/completions", param="model",
                code="no_chat_template")
        normalized = [normalize_message(m, i) for i, m in enumerate(messages)]
        try:
            return self._template.render(
                messages=normalized, add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token, eos_token=self.eos_token, **extra,
            )
        except (jinja2.TemplateError, TypeError, ValueError, LookupError, AttributeError) as exc:
            # the template's own code failing on these messages (a filter given the wrong type,
            # a missing key): the request's shape, not the server, so a 400 that says so
            raise InvalidRequest(f"the model's chat template refused these messages: {exc}",
                                 param="messages") from None


def normalize_message(message: Mapping[str, Any], index: int) -> dict[str, Any]:
    """Plain-text content for the template: parts joined, None as "", reasoning dropped."""
    if not isinstance(message, Mapping):
        raise InvalidRequest(f"messages[{index}] must be an object", param=f"messages[{index}]")
    role = message.get("role")
    if not isinstance(role, str) or not role:
        raise InvalidRequest(f"messages[{index}] has no role", param=f"messages[{index}].role")
    out = {k: v for k, v in message.items() if k != "reasoning_content"}
    out["content"] = _text_of(message.get("content"), index)
    return out


def _text_of(content: Any, index: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            else:
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise InvalidParameters(
                    f"messages[{index}].content: the local engine reads text only, not {kind!r} parts",
                    param=f"messages[{index}].content",
                )
        return "".join(texts)
    raise InvalidRequest(f"messages[{index}].content must be a string or a list of parts",
                         param=f"messages[{index}].content")
