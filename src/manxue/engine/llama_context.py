"""The llama.cpp context the scheduler drives: one unified KV cache, one reusable batch.

All calls happen on the engine thread. ctypes releases the GIL inside llama_decode, so the
event loop keeps running while a step computes. The batch's arrays are exposed as numpy views
(and its per-token seq-id pointers aimed at one contiguous array), so filling a step costs a
few vectorised copies instead of one ctypes call per token.
"""

from __future__ import annotations

import ctypes
import itertools
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from manxue.engine.model_file import ModelFile
from manxue.engine.options import EngineOptions

# llama_decode return codes
DECODE_OK = 0
DECODE_NO_KV_SLOT = 1


class DecodeContext:
    def __init__(self, model: ModelFile, opts: EngineOptions) -> None:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = opts.n_ctx
        params.n_batch = opts.n_batch
        params.n_ubatch = opts.n_ubatch
        params.n_seq_max = opts.n_parallel
        params.n_threads = opts.threads
        params.n_threads_batch = opts.threads_batch
        params.kv_unified = True
        params.no_perf = True
        params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if opts.flash_attn
                                  else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        ctx = llama_cpp.llama_init_from_model(model.model, params)
        if not ctx:
            raise RuntimeError(f"llama.cpp could not create a context (n_ctx={opts.n_ctx}, "
                               f"n_parallel={opts.n_parallel})")
        self.ctx: Any = ctx
        self.mem: Any = llama_cpp.llama_get_memory(ctx)
        self.n_vocab = model.n_vocab
        self.n_ctx = int(llama_cpp.llama_n_ctx(ctx))
        self.n_batch = opts.n_batch
        self.n_seq_max = opts.n_parallel
        self.batch: Any = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        n = self.n_batch
        b = self.batch
        self.tok: npt.NDArray[np.int32] = np.ctypeslib.as_array(b.token, shape=(n,))
        self.pos: npt.NDArray[np.int32] = np.ctypeslib.as_array(b.pos, shape=(n,))
        self.want: npt.NDArray[np.int8] = np.ctypeslib.as_array(
            ctypes.cast(b.logits, ctypes.POINTER(ctypes.c_int8)), shape=(n,))
        np.ctypeslib.as_array(b.n_seq_id, shape=(n,))[:] = 1
        self.seq: npt.NDArray[np.int32] = np.zeros(n, dtype=np.int32)
        self._own_seq_ptrs: list[int] = [ctypes.cast(b.seq_id[i], ctypes.c_void_p).value or 0
                                         for i in range(n)]
        base = self.seq.ctypes.data
        ptr_t = ctypes.POINTER(llama_cpp.llama_seq_id)
        for i in range(n):
            b.seq_id[i] = ctypes.cast(base + 4 * i, ptr_t)

    def close(self) -> None:
        if self.ctx is None:
            return
        ptr_t = ctypes.POINTER(llama_cpp.llama_seq_id)
        for i, addr in enumerate(self._own_seq_ptrs):  # hand llama_batch_free its own buffers back
            self.batch.seq_id[i] = ctypes.cast(addr, ptr_t)
        llama_cpp.llama_batch_free(self.batch)
        llama_cpp.llama_free(self.ctx)
        self.ctx = None

    # -- decoding ---------------------------------------------------------------------------

    def decode(self, n_tokens: int) -> int:
        """Run the first `n_tokens` entries of tok/pos/seq/want (filled by the caller)."""
        self.batch.n_tokens = n_tokens
        return int(llama_cpp.llama_decode(self.ctx, self.batch))

    def logits(self, n_outputs: int) -> npt.NDArray[np.float32]:
        """Rows of logits of the last decode, in batch order of the tokens that asked for them."""
        ptr = llama_cpp.llama_get_logits(self.ctx)
        return np.ctypeslib.as_array(ptr, shape=(n_outputs, self.n_vocab))

    def logits_rows(self, first: int, count: int) -> npt.NDArray[np.float32]:
        """Logits of batch entries [first, first + count) of the last decode (each asked for
        logits), looked up by batch index (llama_get_logits_ith): a view when llama.cpp keeps
        them in consecutive rows, as it does, else a copy."""
        ptrs = [llama_cpp.llama_get_logits_ith(self.ctx, first + i) for i in range(count)]
        addrs = [ctypes.cast(p, ctypes.c_void_p).value or 0 for p in ptrs]
        if not all(addrs):
            raise RuntimeError(f"llama.cpp has no logits for batch entries {first}..{first + count - 1}")
        row_bytes = 4 * self.n_vocab
        if all(b - a == row_bytes for a, b in itertools.pairwise(addrs)):
            return np.ctypeslib.as_array(ptrs[0], shape=(count, self.n_vocab))
        return np.stack([np.ctypeslib.as_array(p, shape=(self.n_vocab,)) for p in ptrs])

    # -- KV cache ---------------------------------------------------------------------------

    def seq_clear(self, seq_id: int) -> None:
        llama_cpp.llama_memory_seq_rm(self.mem, seq_id, -1, -1)

    def seq_truncate(self, seq_id: int, keep: int) -> bool:
        """Keep positions [0, keep) of a sequence."""
        return bool(llama_cpp.llama_memory_seq_rm(self.mem, seq_id, keep, -1))

    def seq_share(self, src: int, dst: int, n: int) -> None:
        """Give `dst` positions [0, n) of `src` (the unified cache shares the cells)."""
        llama_cpp.llama_memory_seq_cp(self.mem, src, dst, 0, n)

    def seq_span(self, seq_id: int) -> tuple[int, int]:
        return (int(llama_cpp.llama_memory_seq_pos_min(self.mem, seq_id)),
                int(llama_cpp.llama_memory_seq_pos_max(self.mem, seq_id)))

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(self.mem, True)

    def save_seq(self, seq_id: int) -> bytearray | None:
        size = int(llama_cpp.llama_state_seq_get_size(self.ctx, seq_id))
        if size <= 0:
            return None
        buf = bytearray(size)
        view = (ctypes.c_uint8 * size).from_buffer(buf)
        n = int(llama_cpp.llama_state_seq_get_data(self.ctx, view, size, seq_id))
        del view
        return buf if n == size else None

    def load_seq(self, seq_id: int, state: bytearray) -> bool:
        view = (ctypes.c_uint8 * len(state)).from_buffer(state)
        try:
            return int(llama_cpp.llama_state_seq_set_data(self.ctx, view, len(state), seq_id)) > 0
        finally:
            del view
