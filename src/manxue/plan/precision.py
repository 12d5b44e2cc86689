"""Weight precisions: bits per weight and the math they run in.

    bf16 / fp16     16 bits, BF16 math
    fp8             8 bits, FP8 math where the hardware has it (else BF16)
    int8            8 bits, INT8 math where the hardware has it (else BF16)
    int4            4 bits, weights dequantized to BF16 for the math (W4A16)
    GGUF types      any ggml type (q4_0, q8_0, q4_k, iq1_s, …): exact bits per weight from
                    the type's block layout in the `gguf` package; BF16 math
    GGUF mixes      q4_k_m, q5_k_s, …: the main type's bits (a lower bound: mixes keep some
                    tensors wider; read the GGUF file for the exact size)
    ud-iq1_s        the published 1.58-bit dynamic quant of DeepSeek-R1: 131 GB for 671B
                    weights = 1.5618 bits per weight on average
    bpw:X           any average bits per weight, e.g. bpw:2.51
"""

from __future__ import annotations

from dataclasses import dataclass

from manxue.errors import InvalidParameters


@dataclass(frozen=True, slots=True)
class Precision:
    name: str
    bits_per_weight: float
    compute: str
    note: str = ""

    @property
    def bytes_per_weight(self) -> float:
        return self.bits_per_weight / 8


_BASIC = {
    "bf16": Precision("bf16", 16, "bf16"),
    "fp16": Precision("fp16", 16, "bf16"),
    "fp8": Precision("fp8", 8, "fp8"),
    "int8": Precision("int8", 8, "int8"),
    "int4": Precision("int4", 4, "bf16", "W4A16: weights dequantized to BF16 for the math"),
    "ud-iq1_s": Precision("ud-iq1_s", 131e9 * 8 / 671e9, "bf16",
                          "DeepSeek-R1 1.58-bit dynamic GGUF: 131 GB for 671B weights"),
}
_MIX_SUFFIXES = ("_xs", "_s", "_m", "_l", "_xl")


def _gguf_type(name: str) -> Precision | None:
    try:
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
    except ImportError:
        return None

    upper = name.upper()
    for suffix in _MIX_SUFFIXES:
        base = upper[: -len(suffix)]
        if upper.endswith(suffix.upper()) and base in GGMLQuantizationType.__members__:
            main = GGMLQuantizationType[base]
            if main in GGML_QUANT_SIZES and base.startswith("Q"):
                block, size = GGML_QUANT_SIZES[main]
                return Precision(name, size * 8 / block, "bf16",
                                 f"GGUF mix; bits of its main type {base} (a lower bound)")
    if upper in GGMLQuantizationType.__members__:
        qtype = GGMLQuantizationType[upper]
        if qtype in GGML_QUANT_SIZES:
            block, size = GGML_QUANT_SIZES[qtype]
            return Precision(name, size * 8 / block, "bf16", f"GGUF {upper}: {size} B per {block}")
    return None


def resolve(name: str) -> Precision:
    """A precision by name (case-insensitive); InvalidParameters names the choices."""
    key = name.strip().lower()
    if key in _BASIC:
        return _BASIC[key]
    if key.startswith("bpw:"):
        try:
            bits = float(key[4:])
        except ValueError:
            bits = -1.0
        if not 0 < bits <= 32:
            raise InvalidParameters(f"precision {name!r}: bpw:X needs 0 < X <= 32", param="precision")
        return Precision(key, bits, "bf16", "average bits per weight given on the command line")
    found = _gguf_type(key)
    if found is None:
        raise InvalidParameters(
            f"unknown precision {name!r}; use one of {', '.join(_BASIC)}, a GGUF type "
            "(q4_k_m, q8_0, iq1_s, …) or bpw:X", param="precision")
    return found


def names() -> tuple[str, ...]:
    return (*_BASIC, "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", "q3_k_m", "q2_k", "iq1_s", "bpw:X")
