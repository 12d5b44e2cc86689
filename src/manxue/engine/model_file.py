"""One GGUF file loaded through llama.cpp's C API: weights, vocabulary and metadata."""

from __future__ import annotations

import ctypes
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

log = logging.getLogger("manxue.engine")
_llama_log = logging.getLogger("manxue.engine.llama")

_init_lock = threading.Lock()
_backend_ready = False
# ggml_log_level -> Python level (1 debug, 2 info, 3 warn, 4 error; 5 continues a line).
# llama.cpp's info lines (model loading, context layout) are debug detail for manxue.
_LEVELS = {1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}


@llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
def _on_llama_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    py_level = _LEVELS.get(level)
    if py_level is not None and _llama_log.isEnabledFor(py_level):
        _llama_log.log(py_level, "%s", text.decode("utf-8", "replace").rstrip())


def ensure_backend() -> None:
    """Initialise llama.cpp once per process and route its log lines to Python logging."""
    global _backend_ready
    with _init_lock:
        if not _backend_ready:
            llama_cpp.llama_log_set(_on_llama_log, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _backend_ready = True


def cpu_has_amx() -> bool:
    """Whether llama.cpp's CPU backend found AMX (Sapphire Rapids and later Xeons)."""
    ensure_backend()
    return b"AMX_INT8 = 1" in (llama_cpp.llama_print_system_info() or b"")


def use_repack(choice: str) -> bool:
    """Resolve the `weight_repack` option. llama.cpp repacks weights into AMX tiles where the
    CPU has AMX, and its AMX matrix product then crashes (segfault) on a prompt of a few dozen
    tokens (llama.cpp issue 20824, seen here with llama-cpp-python 0.3.36 on Q4_1 weights);
    "auto" therefore repacks only on CPUs without AMX."""
    if choice == "auto":
        if cpu_has_amx():
            log.info("this CPU has AMX: weights are not repacked (llama.cpp's AMX kernels "
                     "crash); set the engine option weight_repack = \"on\" to try them")
            return False
        return True
    return choice == "on"


_TOKENIZERS = {"gpt2": "bpe", "llama": "spm", "bert": "wpm", "t5": "ugm", "rwkv": "rwkv",
               "plamo2": "plamo2"}


@dataclass(frozen=True, slots=True)
class ModelInfo:
    path: str
    name: str
    architecture: str
    context_length: int
    """Training context of the model (llama.cpp n_ctx_train)."""
    quantization: str
    size_bytes: int
    tokenizer: str
    vocab_size: int
    chat_template: str | None
    bos_token: str
    eos_token: str
    add_bos: bool


class ModelFile:
    """Loaded weights plus a thread-safe tokenizer (llama.cpp's vocabulary is read-only)."""

    def __init__(self, path: str | Path, *, n_gpu_layers: int = 0, repack: str = "auto") -> None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"model file not found: {p}")
        ensure_backend()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        params.use_extra_bufts = use_repack(repack)
        model = llama_cpp.llama_model_load_from_file(str(p).encode(), params)
        if not model:
            raise ValueError(f"{p}: llama.cpp could not load this file as a GGUF model")
        self.path = p
        self.model: Any = model
        self.vocab: Any = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.metadata = self._read_metadata()
        self._pieces: list[bytes | None] = [None] * self.n_vocab
        self.eog_mask = self._eog_mask()
        self.info = self._describe()

    def close(self) -> None:
        if self.model is not None:
            llama_cpp.llama_model_free(self.model)
            self.model = None

    # -- metadata ---------------------------------------------------------------------------

    def _read_metadata(self) -> dict[str, str]:
        out: dict[str, str] = {}
        size = 1 << 16
        buf = ctypes.create_string_buffer(size)
        for i in range(int(llama_cpp.llama_model_meta_count(self.model))):
            if llama_cpp.llama_model_meta_key_by_index(self.model, i, buf, size) < 0:
                continue
            key = buf.value.decode("utf-8", "replace")
            n = int(llama_cpp.llama_model_meta_val_str_by_index(self.model, i, buf, size))
            if n < 0:
                continue
            if n >= size:  # a long value (chat templates can be tens of kB)
                big = ctypes.create_string_buffer(n + 1)
                llama_cpp.llama_model_meta_val_str_by_index(self.model, i, big, n + 1)
                out[key] = big.value.decode("utf-8", "replace")
            else:
                out[key] = buf.value.decode("utf-8", "replace")
        return out

    def _describe(self) -> ModelInfo:
        buf = ctypes.create_string_buffer(256)
        llama_cpp.llama_model_desc(self.model, buf, 256)
        desc = buf.value.decode("utf-8", "replace").split()
        md = self.metadata
        bos = int(llama_cpp.llama_vocab_bos(self.vocab))
        eos = int(llama_cpp.llama_vocab_eos(self.vocab))
        return ModelInfo(
            path=str(self.path),
            name=md.get("general.name", self.path.stem),
            architecture=md.get("general.architecture", desc[0] if desc else "unknown"),
            context_length=int(llama_cpp.llama_model_n_ctx_train(self.model)),
            quantization=_quant_name(desc),
            size_bytes=self.path.stat().st_size,
            tokenizer=_TOKENIZERS.get(md.get("tokenizer.ggml.model", ""),
                                      md.get("tokenizer.ggml.model", "unknown")),
            vocab_size=self.n_vocab,
            chat_template=md.get("tokenizer.chat_template") or None,
            bos_token=self.special_text(bos),
            eos_token=self.special_text(eos),
            add_bos=bool(llama_cpp.llama_vocab_get_add_bos(self.vocab)),
        )

    def _eog_mask(self) -> npt.NDArray[np.bool_]:
        is_eog = llama_cpp.llama_vocab_is_eog
        mask = np.fromiter((bool(is_eog(self.vocab, t)) for t in range(self.n_vocab)),
                           dtype=np.bool_, count=self.n_vocab)
        return mask

    # -- tokens -----------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = True) -> list[int]:
        """Token ids of `text`; `special` parses control tokens like <|im_start|> as such."""
        raw = text.encode("utf-8")
        cap = len(raw) + 8
        arr = (llama_cpp.llama_token * cap)()
        n = int(llama_cpp.llama_tokenize(self.vocab, raw, len(raw), arr, cap, add_bos, special))
        if n < 0:
            cap = -n
            arr = (llama_cpp.llama_token * cap)()
            n = int(llama_cpp.llama_tokenize(self.vocab, raw, len(raw), arr, cap, add_bos, special))
        return list(arr[:n])

    def piece(self, token: int) -> bytes:
        """The bytes a generated token stands for (control tokens render as nothing)."""
        cached = self._pieces[token]
        if cached is None:
            cached = self._token_bytes(token, special=False)
            self._pieces[token] = cached
        return cached

    def show_as_text(self, texts: tuple[str, ...]) -> None:
        """Generated control tokens spelling one of `texts` render as that text from now on
        (a tool format's markers, which the answer must carry)."""
        for text in texts:
            ids = self.tokenize(text, special=True)
            if len(ids) == 1:
                self._pieces[ids[0]] = text.encode()

    def special_text(self, token: int) -> str:
        if token < 0 or token >= self.n_vocab:
            return ""
        return self._token_bytes(token, special=True).decode("utf-8", "replace")

    def _token_bytes(self, token: int, *, special: bool) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = int(llama_cpp.llama_token_to_piece(self.vocab, token, buf, 64, 0, special))
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = int(llama_cpp.llama_token_to_piece(self.vocab, token, buf, -n, 0, special))
        return buf.raw[:n]


_SIZES = {"Small": "S", "Medium": "M", "Large": "L", "Extra": "XS"}


def _quant_name(desc: list[str]) -> str:
    """llama.cpp describes a model as "gemma3 270M Q4_K - Medium": answer "Q4_K_M"."""
    if len(desc) < 3:
        return desc[-1] if desc else "unknown"
    quant = desc[2]
    if len(desc) >= 5 and desc[3] == "-":
        quant += "_" + _SIZES.get(desc[4], desc[4])
    return quant
