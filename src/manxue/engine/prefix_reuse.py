"""How a new sequence reuses prompt cells instead of computing them (the scheduler's part).

A new request first looks for the longest shared prefix: among running sequences (the unified
KV cache shares those cells, llama_memory_seq_cp) and among saved prefixes (prefix_cache.py,
restored with llama_state_seq_set_data). When a running sequence is still reading a longer
shared prefix (a burst of requests with one system prompt), the newcomer waits for it and then
shares its cells, so the prefix is computed once. At least the last prompt token is always
decoded again, since llama.cpp only returns logits for tokens of the current batch. Usage
reports exactly the reused tokens as prompt_cache_hit_tokens.

Runs on the scheduler's thread, as a part of Scheduler (which owns the state named below).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from manxue.engine.llama_context import DecodeContext
from manxue.engine.prefix_cache import PrefixCache, common_prefix
from manxue.engine.scoring import EXACT_ROWS
from manxue.engine.sequence import Sequence, Slot

if TYPE_CHECKING:
    from manxue.engine.scheduler import EngineStats

log = logging.getLogger("manxue.engine")

_RESTORE_RATIO = 16  # restore a saved prefix only when it is at most this many times the reuse
_WAIT_GAIN = 16  # wait for a prefix another sequence is computing when it saves this many tokens


class PrefixReuse:
    ctx: DecodeContext
    cache: PrefixCache | None
    stats: EngineStats
    _running: list[Sequence]

    def _attach_prefix(self, seq: Sequence, slot: Slot) -> None:
        """Reuse the longest available prefix; or wait for one a running sequence is reading."""
        target = seq.target
        limit = seq.reuse_limit
        live_src: Slot | None = None
        live = 0
        coming: Sequence | None = None
        coming_len = 0
        for other in self._running:
            s = other.slot
            if other is seq or s is None or other.target[0] != target[0]:
                continue
            if s.n:
                n = common_prefix(target, s.committed())
                if n > live:
                    live, live_src = n, s
            if other.prefilling and other.order < seq.order:  # holds more of it in a step or two
                n = min(common_prefix(target, other.target), limit)
                if n > s.n and n > coming_len:
                    coming, coming_len = other, n
        live = min(live, limit)
        entry = None
        saved = 0
        if self.cache is not None:
            entry, saved = self.cache.match(target)
            saved = min(saved, limit)
            if (entry is not None and (saved < self.cache.min_tokens
                                       or entry.n_tokens > _RESTORE_RATIO * saved)):
                saved = 0
            if saved > live and self._one_step_score(seq, live):
                saved = 0
        if coming is not None and coming_len >= max(live, saved) + _WAIT_GAIN:
            seq.wait_for = (coming, coming_len)  # share it once computed, instead of twice
            return
        reused = 0
        if live_src is not None and live > 0 and live >= saved:
            self.ctx.seq_share(live_src.seq_id, slot.seq_id, live)
            reused = live
        elif entry is not None and saved > 0:
            reused = self._restore(slot, entry, saved)
        self._reused(seq, slot, reused)

    def _one_step_score(self, seq: Sequence, reused: int) -> bool:
        """A scoring request that, after `reused` tokens, fits one step with the others' rows
        computes them rather than restore a saved prefix while others run: restored cells
        would sit before the others' next tokens, and once freed let later tokens of theirs
        land in KV cells ahead of earlier ones, which changes their attention's rounding."""
        others = len(self._running) - (seq in self._running)
        return (seq.score is not None and others > 0
                and seq.target.size - reused + others <= EXACT_ROWS)

    def _reused(self, seq: Sequence, slot: Slot, reused: int) -> None:
        if reused:
            slot.commit(seq.target[:reused])
        seq.n_fed = reused
        self._arm_last(seq)
        if seq.hit is None:
            seq.hit = reused
            self.stats.cache_hit_tokens += reused
            self.stats.prompt_tokens += int(seq.request.prompt.size)

    @staticmethod
    def _arm_last(seq: Sequence) -> None:
        """The last prompt token is decoded in a step of its own rows, like a generated token,
        so its logits do not depend on how much of the prompt was cached or chunked."""
        if seq.needs_logits and seq.pending is None and seq.n_fed == seq.target.size - 1:
            seq.pending = int(seq.target[-1])
            seq.n_fed = seq.target.size

    def _resolve_waits(self) -> None:
        """Sequences waiting for a prefix another one is computing: share it when ready."""
        for seq in self._running:
            if seq.wait_for is None or seq.slot is None:
                continue
            other, n = seq.wait_for
            src = other.slot
            if other.finished or src is None:
                seq.wait_for = None
                self._attach_prefix(seq, seq.slot)
            elif src.n >= n or not other.prefilling:
                seq.wait_for = None
                n = min(n, src.n)
                if n:
                    self.ctx.seq_share(src.seq_id, seq.slot.seq_id, n)
                self._reused(seq, seq.slot, n)

    def _restore(self, slot: Slot, entry: Any, n: int) -> int:
        assert self.cache is not None
        state = self.cache.state_of(entry)
        if state is None:
            return 0
        if not self.ctx.load_seq(slot.seq_id, state):
            log.warning("prefix cache: llama.cpp refused a saved state; dropping it")
            self.cache.drop(entry)
            self.ctx.seq_clear(slot.seq_id)
            return 0
        lo, hi = self.ctx.seq_span(slot.seq_id)
        if lo != 0 or hi + 1 < n or not self.ctx.seq_truncate(slot.seq_id, n):
            self.ctx.seq_clear(slot.seq_id)
            return 0
        return n
