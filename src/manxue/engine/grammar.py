"""Grammar-constrained sampling with llama.cpp's own grammar sampler, and JSON Schema → GBNF.

    gbnf = schema_grammar(schema)                # InvalidParameters naming an unsupported keyword
    g = GrammarSampler(vocab, gbnf)              # one per sequence (ValueError: invalid grammar)
    g.allows(token)                              # whether the grammar accepts one token next
    g.mask(row)                                  # logits of tokens the grammar forbids -> -inf
    g.accept(token)                              # advance the grammar past the sampled token

Sampling first draws as usual and asks the grammar about that one token; only when it is
refused is the row drawn again, from the LIKELIEST (256) tokens that llama.cpp's C++ grammar
allows (a llama_token_data array laid over a numpy buffer, no per-token Python; the whole
vocabulary when none of those is allowed), so temperature, top_p and seeds keep their
meaning within that set.
End-of-generation tokens are allowed only once the grammar is complete, so a constrained
answer always parses.
"""

from __future__ import annotations

import ctypes
import json
import re
import threading
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt
from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from manxue.errors import InvalidParameters

LIKELIEST = 256
"""When the drawn token is refused, the next draw is among this many likeliest tokens that the
grammar allows (the whole vocabulary only when none of them is)."""
_TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
assert _TOKEN_DATA.itemsize == ctypes.sizeof(llama_cpp.llama_token_data)

SUPPORTED_KEYWORDS = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "prefixItems",
    "minItems", "maxItems", "enum", "const", "anyOf", "$ref", "$defs", "definitions",
    "description", "title", "default", "examples", "format", "pattern", "minLength",
    "maxLength", "$schema", "$id", "$comment", "strict",
})
"""What the JSON Schema → GBNF conversion honours; any other keyword is refused by name rather
than silently ignored (which would let outputs through that do not validate): numeric bounds
(`minimum`...), `oneOf` (exactly one) and `allOf` are not honoured by the grammar."""
_BY_TYPE = {"string": ("minLength", "maxLength", "pattern", "format"),
            "array": ("items", "prefixItems", "minItems", "maxItems"),
            "object": ("properties", "required", "additionalProperties")}


_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_JSON_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def json_grammar() -> str:
    """Any JSON object (response_format json_object)."""
    return JSON_GBNF


def check_schema(schema: Any, where: str = "schema") -> None:
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise InvalidParameters(f"{where} must be a JSON Schema object", param="response_format")
    for key, value in schema.items():
        if key not in SUPPORTED_KEYWORDS:
            raise InvalidParameters(
                f"JSON Schema keyword {key!r} (at {where}) is not supported by the local "
                f"engine's constrained sampling; supported: {', '.join(sorted(SUPPORTED_KEYWORDS))}",
                param="response_format", code="unsupported_schema_keyword")
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            for name, sub in value.items():
                check_schema(sub, f"{where}.{key}.{name}")
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            check_schema(value, f"{where}.{key}")
        elif key in ("anyOf", "prefixItems") and isinstance(value, list):
            for i, sub in enumerate(value):
                check_schema(sub, f"{where}.{key}[{i}]")


def _normalized(schema: Any) -> Any:
    """The schema with every `type: [a, b]` spelled as an anyOf of one branch per type, each
    with its own keywords (the converter drops a union's string lengths otherwise)."""
    if isinstance(schema, list):
        return [_normalized(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (_normalized(v) if k not in ("enum", "const", "default", "examples") else v)
           for k, v in schema.items()}
    if key_props := out.get("properties"):
        out["properties"] = {n: _normalized(v) for n, v in key_props.items()}
    types = out.get("type")
    if isinstance(types, list):
        kept = {k: v for k, v in out.items() if k not in ("type", *sum(_BY_TYPE.values(), ()))}
        kept["anyOf"] = [{"type": t, **{k: out[k] for k in _BY_TYPE.get(t, ()) if k in out}}
                         for t in types]
        return kept
    return out


def schema_grammar(schema: Any) -> str:
    """GBNF for a JSON Schema (InvalidParameters naming what cannot be honoured)."""
    check_schema(schema)
    if schema is True or schema == {}:
        return JSON_GBNF
    try:
        gbnf = str(json_schema_to_gbnf(json.dumps(_normalized(schema))))
    except (ValueError, KeyError, TypeError, NotImplementedError, RecursionError) as exc:
        raise InvalidParameters(f"the JSON Schema cannot be turned into a grammar: {exc}",
                                param="response_format", code="unsupported_schema") from None
    # the converter's string characters admit raw control characters, which JSON forbids
    return gbnf.replace(_LOOSE_CHAR, _JSON_CHAR)


class GrammarSampler:
    """One sequence's grammar state (llama.cpp's grammar sampler over the model's vocabulary)."""

    _lock = threading.Lock()  # parsing a grammar logs through llama.cpp's global logger

    def __init__(self, vocab: Any, gbnf: str, n_vocab: int) -> None:
        with self._lock:
            ptr = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
        if not ptr:
            raise ValueError("llama.cpp could not parse the grammar")
        self._ptr: Any = ptr
        self._data = np.zeros(n_vocab, dtype=_TOKEN_DATA)
        self._data["id"] = np.arange(n_vocab, dtype=np.int32)
        self._array = llama_cpp.llama_token_data_array(
            data=self._data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)),
            size=n_vocab, selected=-1, sorted=False)
        self._one = np.zeros(1, dtype=_TOKEN_DATA)
        self._one_array = llama_cpp.llama_token_data_array(
            data=self._one.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)),
            size=1, selected=-1, sorted=False)

    def mask(self, row: npt.NDArray[np.float32]) -> None:
        """Set the logits of every token the grammar does not allow next to -inf, in place."""
        data = self._data
        data["logit"] = row
        self._array.size = row.size
        self._array.selected = -1
        self._array.sorted = False
        llama_cpp.llama_sampler_apply(self._ptr, ctypes.byref(self._array))
        row[:] = data["logit"]

    def mask_likeliest(self, row: npt.NDArray[np.float32], k: int = LIKELIEST) -> None:
        """Keep only the `k` likeliest tokens the grammar allows (all others -inf), in place;
        the whole vocabulary's mask when none of those `k` is allowed."""
        if k >= row.size:
            self.mask(row)
            return
        ids = np.argpartition(row, row.size - k)[row.size - k:]
        head = self._data[:k]
        head["id"] = ids
        head["logit"] = row[ids]
        self._array.size = k
        self._array.selected = -1
        self._array.sorted = False
        llama_cpp.llama_sampler_apply(self._ptr, ctypes.byref(self._array))
        kept = np.isfinite(head["logit"])
        allowed, logits = head["id"][kept].copy(), head["logit"][kept].copy()
        self._data["id"][:k] = np.arange(k, dtype=np.int32)  # restore the identity layout
        if not allowed.size:
            self.mask(row)
            return
        row[:] = -np.inf
        row[allowed] = logits

    def allows(self, token: int) -> bool:
        """Whether the grammar accepts `token` next (checked on a one-token candidate list)."""
        one = self._one
        one["id"][0] = token
        one["logit"][0] = 0.0
        self._one_array.size = 1
        self._one_array.selected = -1
        self._one_array.sorted = False
        llama_cpp.llama_sampler_apply(self._ptr, ctypes.byref(self._one_array))
        return bool(np.isfinite(one["logit"][0]))

    def accept(self, token: int) -> None:
        llama_cpp.llama_sampler_accept(self._ptr, token)

    def close(self) -> None:
        ptr, self._ptr = self._ptr, None
        if ptr:
            llama_cpp.llama_sampler_free(ptr)

    def __del__(self) -> None:
        self.close()


def check_grammar(vocab: Any, gbnf: str, n_vocab: int) -> None:
    """InvalidParameters when llama.cpp cannot parse `gbnf` (checked before queueing)."""
    try:
        GrammarSampler(vocab, gbnf, n_vocab).close()
    except ValueError:
        raise InvalidParameters("the grammar derived from the request could not be parsed",
                                param="response_format", code="invalid_grammar") from None


# GBNF: what a rule body may hold besides rule names (literals, character classes, comments)
_GBNF_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|#[^\n]*|[A-Za-z][A-Za-z0-9-]*|\s+|.', re.DOTALL)


def namespaced(gbnf: str, prefix: str) -> str:
    """A grammar with every rule name prefixed, so that several can live in one grammar."""
    out = []
    for line in gbnf.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, body = line.partition("::=")
        if not sep:  # a rule's continuation line
            name, body = "", line
        tokens = _GBNF_TOKEN.findall(body)
        renamed = "".join(prefix + t if t[0].isalpha() else t for t in tokens)
        out.append((f"{prefix}{name.strip()} ::=" if sep else "") + renamed)
    return "\n".join(out)
