"""Continuous batching on one background thread.

Each step is ONE llama_decode call that advances every running sequence by one token and
feeds up to `prefill_chunk` prompt tokens (shared, oldest first) of sequences still reading
their prompt, so a long prompt never stalls the others. New requests join between steps;
finished and cancelled ones leave between steps and free their sequence slot at once.

A new request first reuses the longest prefix it can find, or waits for one a running sequence
is computing (prefix_reuse.py).

If the KV cache runs out of cells, the newest sequence is swapped out (its state saved as a
prefix), put back at the head of the queue and resumed later from that saved state.

A scoring request (scoring.py) is a prompt that never generates: its tokens are fed like a
prompt's, with logits asked for at the positions it scores, in steps kept small enough that
they are computed by the same kernels as generated tokens (_feed_prompts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from manxue.engine.handles import Failed, Finished, Handle
from manxue.engine.llama_context import DECODE_NO_KV_SLOT, DECODE_OK, DecodeContext
from manxue.engine.model_file import ModelFile
from manxue.engine.prefix_cache import PrefixCache
from manxue.engine.prefix_reuse import PrefixReuse
from manxue.engine.sampling import sample_batch
from manxue.engine.scoring import EXACT_ROWS
from manxue.engine.sequence import Sequence, Slot
from manxue.errors import ManxueError, UpstreamError

log = logging.getLogger("manxue.engine")

_IDLE_WAIT = 0.005  # seconds to wait for news when running sequences could not advance
_EXACT_MIN_ROWS = 8  # a step reading scored rows is kept under EXACT_ROWS if this many fit


@dataclass(slots=True)
class EngineStats:
    steps: int = 0
    batched_steps: int = 0
    """Steps whose single llama_decode advanced more than one sequence."""
    max_batch_sequences: int = 0
    decode_seconds: float = 0.0
    prompt_tokens: int = 0
    prompt_tokens_computed: int = 0
    cache_hit_tokens: int = 0
    generated_tokens: int = 0
    scored_tokens: int = 0
    """Continuation tokens whose log-probability a scoring request read (scoring.py)."""
    requests: int = 0
    rejected: int = 0
    preempted: int = 0


@dataclass(slots=True)
class _Batch:
    """One decode step's rows: generating sequences first (their logits are sampled), then
    prompt tokens fed (and, for scoring requests, the rows whose logits are read)."""

    outputs: list[Sequence] = field(default_factory=list)
    decoding: int = 0
    fed: list[tuple[Sequence, int]] = field(default_factory=list)
    scored: list[tuple[Sequence, int, int]] = field(default_factory=list)  # first row, rows
    rows: int = 0


class Scheduler(PrefixReuse):
    """Owns the llama.cpp context; every call into it happens on its one thread."""

    def __init__(self, model: ModelFile, ctx: DecodeContext, *, n_parallel: int, prefill_chunk: int,
                 max_queue: int, ctx_limit: int, cache: PrefixCache | None) -> None:
        self.model = model
        self.ctx = ctx
        self.cache = cache
        self.prefill_chunk = min(prefill_chunk, ctx.n_batch)
        self.max_queue = max_queue
        self.n_parallel = n_parallel
        self.ctx_limit = ctx_limit
        self.stats = EngineStats()
        self._slots = [Slot(i, np.zeros(ctx_limit + 1, dtype=np.int32)) for i in range(n_parallel)]
        self._free: list[Slot] = list(reversed(self._slots))
        self._running: list[Sequence] = []
        self._waiting: deque[Sequence] = deque()
        self._inbox: queue.SimpleQueue[tuple[str, Handle | None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._accepted = 0  # submitted and not yet finished (running + waiting + in the inbox)
        self._order = 0
        self._by_handle: dict[int, Sequence] = {}
        self._wake: dict[asyncio.AbstractEventLoop, list[Handle]] = {}
        self._broken: BaseException | None = None
        self._hold = False  # after a swap-out, admit nothing until a sequence finishes
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="manxue-engine", daemon=True)

    # -- any thread -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, handle: Handle) -> None:
        if self._broken is not None or self._stopping:
            raise UpstreamError("local engine is not running", status=503, code="engine_down")
        with self._lock:
            if self._accepted >= self.n_parallel + self.max_queue:
                self.stats.rejected += 1
                raise UpstreamError(
                    f"local engine is full ({self.n_parallel} running, {self.max_queue} waiting)",
                    status=429, retry_after=1, code="engine_queue_full")
            self._accepted += 1
        handle._cancel_hook = self._cancel
        self._inbox.put(("submit", handle))

    def _cancel(self, handle: Handle) -> None:
        self._inbox.put(("cancel", handle))

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping = True
        self._inbox.put(("stop", None))
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        return {
            "queue": len(self._waiting),
            "running": len(self._running),
            "accepted": self._accepted,
            "steps": s.steps,
            "batched_steps": s.batched_steps,
            "max_batch_sequences": s.max_batch_sequences,
            "decode_seconds": round(s.decode_seconds, 3),
            "requests": s.requests,
            "rejected": s.rejected,
            "preempted": s.preempted,
            "prompt_tokens": s.prompt_tokens,
            "prompt_tokens_computed": s.prompt_tokens_computed,
            "prefix_cache_hit_tokens": s.cache_hit_tokens,
            "generated_tokens": s.generated_tokens,
            "scored_tokens": s.scored_tokens,
            "cached_prefixes": len(self.cache) if self.cache is not None else 0,
            "cached_prefix_tokens": self.cache.cached_tokens if self.cache is not None else 0,
            "cached_prefix_bytes": self.cache.ram_used if self.cache is not None else 0,
            "healthy": self._broken is None and not self._stopping,
        }

    # -- engine thread ----------------------------------------------------------------------

    def _run(self) -> None:
        idle = True
        try:
            while not self._stopping:
                self._drain(block=idle, wait=None if not self._running and not self._waiting
                            else _IDLE_WAIT)
                if self._stopping:
                    break
                self._admit()
                idle = not (self._running and self._step())
                self._deliver()
        except BaseException as exc:  # the loop must never die silently
            log.exception("local engine stopped on an error")
            self._broken = exc
            self._fail_all(UpstreamError(f"local engine failed: {exc}", status=503,
                                         code="engine_failed"))
        finally:
            self._shutdown()

    def _drain(self, *, block: bool, wait: float | None = None) -> None:
        """Take inbox messages; with `block`, first wait for one (`wait` seconds at most)."""
        while True:
            try:
                kind, handle = self._inbox.get(timeout=wait) if block else self._inbox.get_nowait()
            except queue.Empty:
                return
            block = False
            if kind == "stop":
                self._stopping = True
                return
            assert handle is not None
            if kind == "submit":
                seq = Sequence(handle, self.model, self._order)
                self._order += 1
                self.stats.requests += 1
                self._by_handle[handle.id] = seq
                if handle.cancelled:
                    self._finish(seq, None)
                else:
                    self._waiting.append(seq)
            elif kind == "cancel":
                found = self._by_handle.get(handle.id)
                if found is not None and not found.finished:
                    self._finish(found, None)

    def _admit(self) -> None:
        while self._waiting and self._free:
            seq = self._waiting[0]
            if self._running and (self._hold or not self._fits(seq)):
                return
            self._waiting.popleft()
            slot = self._free.pop()
            seq.slot = slot
            self._attach_prefix(seq, slot)
            self._running.append(seq)

    def _fits(self, seq: Sequence) -> bool:
        """A rough KV budget check, so admissions do not immediately force swaps."""
        used = sum(s.target.size + s.n_generated + 1 for s in self._running)
        return used + seq.target.size + 1 <= self.ctx.n_ctx

    def _step(self) -> bool:
        """One llama_decode for every running sequence; False when there was nothing to do."""
        self._resolve_waits()
        batch = self._schedule()
        if batch is None:
            return False
        if not self._decode(batch):
            return True
        self._commit(batch)
        if batch.outputs:
            self._postprocess(batch.outputs)
        return True

    def _schedule(self) -> _Batch | None:
        """Fill the decode batch: each generating sequence's pending token (its logits read
        after the step), then prompt tokens up to the batch size; None when there is nothing."""
        ctx = self.ctx
        batch = _Batch()
        n = 0
        for seq in self._running:
            if seq.pending is not None and not seq.prefilling:
                assert seq.slot is not None
                ctx.tok[n] = seq.pending
                ctx.pos[n] = seq.slot.n
                ctx.seq[n] = seq.slot.seq_id
                ctx.want[n] = 1
                n += 1
                batch.outputs.append(seq)
        batch.decoding = n
        batch.rows = self._feed_prompts(n, batch.fed, batch.scored)
        return batch if batch.rows else None

    def _decode(self, batch: _Batch) -> bool:
        """Decode the batch; False when it did not run (no KV room: the newest sequence was
        swapped out; an error: the running sequences failed)."""
        t0 = time.perf_counter()
        rc = self.ctx.decode(batch.rows)
        self.stats.decode_seconds += time.perf_counter() - t0
        if rc == DECODE_NO_KV_SLOT:
            self._swap_out_newest()
            return False
        if rc != DECODE_OK:
            self._fail_running(rc)
            return False
        self.stats.steps += 1
        in_batch = batch.decoding + len(batch.fed)
        if in_batch > 1:
            self.stats.batched_steps += 1
        self.stats.max_batch_sequences = max(self.stats.max_batch_sequences, in_batch)
        return True

    def _commit(self, batch: _Batch) -> None:
        """After a step: the decoded and fed tokens are in each sequence's cache; scores read,
        finished scoring requests ended."""
        self._read_scores(batch.scored)
        for seq in batch.outputs[:batch.decoding]:
            assert seq.slot is not None and seq.pending is not None
            seq.slot.commit([seq.pending])
            seq.pending = None
            if seq.needs_logits:  # that was the last prompt token
                self.stats.prompt_tokens_computed += 1
        for seq, take in batch.fed:
            assert seq.slot is not None
            seq.slot.commit(seq.target[seq.n_fed : seq.n_fed + take])
            seq.n_fed += take
            self.stats.prompt_tokens_computed += take
            self._arm_last(seq)
            if seq.score is not None and not seq.prefilling:
                self._finish(seq, "scored")

    def _postprocess(self, outputs: list[Sequence]) -> None:
        """Sample the next token of every generating sequence; end those that are done."""
        logits = self.ctx.logits(len(outputs))
        tokens, lps = sample_batch(logits, [s.sampler for s in outputs])
        self.stats.generated_tokens += len(tokens)
        for seq, tok, lp in zip(outputs, tokens, lps, strict=True):
            seq.needs_logits = False
            reason = seq.accept(tok, lp)
            if reason is None and seq.slot is not None and seq.slot.n >= self.ctx_limit:
                seq.end_early()
                reason = "length"
            if reason is not None:
                self._finish(seq, reason)
            else:
                self._touch(seq.handle)

    def _feed_prompts(self, n: int, fed: list[tuple[Sequence, int]],
                      scored: list[tuple[Sequence, int, int]]) -> int:
        """Add prompt tokens after the `n` decoding rows (shared budget, oldest first); record
        them in `fed`, and scoring requests' logits rows in `scored`. Returns the batch size.

        Scoring requests about to read logits go first, and their step stays within EXACT_ROWS
        tokens when it can: their log-probabilities then come from the same kernels as those
        of generated tokens (see scoring.EXACT_ROWS)."""
        ctx = self.ctx
        budget = min(self.prefill_chunk, ctx.n_batch - n)
        ready = [s for s in self._running if s.prefilling and s.wait_for is None]
        reading = [s for s in ready if s.score is not None and s.score.reading(s.n_fed)]
        if reading:
            ready = reading + [s for s in ready if s not in reading]
            if EXACT_ROWS - n >= _EXACT_MIN_ROWS:
                budget = min(budget, EXACT_ROWS - n)
        for seq in ready:
            if budget <= 0:
                break
            assert seq.slot is not None
            upto = seq.target.size - 1 if seq.needs_logits else seq.target.size
            take = min(budget, upto - seq.n_fed)
            if seq.score is not None:
                take = seq.score.clip(seq.n_fed, take)
            if take <= 0:
                continue
            end = n + take
            ctx.tok[n:end] = seq.target[seq.n_fed : seq.n_fed + take]
            ctx.pos[n:end] = np.arange(seq.slot.n, seq.slot.n + take, dtype=np.int32)
            ctx.seq[n:end] = seq.slot.seq_id
            ctx.want[n:end] = 0
            if seq.score is not None:
                off, rows = seq.score.outputs_in(seq.n_fed, take)
                if rows:
                    ctx.want[n + off : n + off + rows] = 1
                    scored.append((seq, n + off, rows))
            fed.append((seq, take))
            n = end
            budget -= take
        return n

    def _read_scores(self, scored: list[tuple[Sequence, int, int]]) -> None:
        """Scoring requests: turn the logits rows they asked for into log-probabilities."""
        for seq, first, rows in scored:
            assert seq.score is not None
            seq.score.take(self.ctx.logits_rows(first, rows))
            self.stats.scored_tokens += rows

    def _finish(self, seq: Sequence, reason: str | None) -> None:
        """End a sequence: reason None means cancelled (nobody listens any more)."""
        if seq.finished:
            return
        seq.finished = True
        if reason is not None:
            seq.handle.push(Finished(reason, seq.usage()))
        seq.handle.done = True
        self._touch(seq.handle)
        if seq.slot is not None:
            self._release(seq.slot, keep=True)
            seq.slot = None
        if seq in self._running:
            self._running.remove(seq)
            self._hold = False
        elif seq in self._waiting:
            self._waiting.remove(seq)
        self._by_handle.pop(seq.handle.id, None)
        with self._lock:
            self._accepted -= 1

    def _release(self, slot: Slot, *, keep: bool) -> None:
        """Free a slot; with `keep`, save its KV as a reusable prefix first."""
        cache = self.cache
        if keep and cache is not None and slot.n >= cache.min_tokens:
            tokens = slot.committed()
            if not cache.covers(tokens):
                state = self.ctx.save_seq(slot.seq_id)
                if state is not None:
                    cache.add(tokens.copy(), state)
        self.ctx.seq_clear(slot.seq_id)
        slot.n = 0
        self._free.append(slot)

    def _swap_out_newest(self) -> None:
        """The KV cache is full: save and requeue the newest sequence (or end a lone one)."""
        victim = max(self._running, key=lambda s: s.order)
        if len(self._running) == 1:
            log.warning("local engine: KV cache full for a single sequence; ending it")
            victim.end_early()
            self._finish(victim, "length")
            return
        assert victim.slot is not None
        self.stats.preempted += 1
        self._hold = True
        slot = victim.slot
        # still reading its prompt (or scoring, which only reads): keep the prompt as target
        reading = victim.pending is None
        victim.target = victim.request.prompt if reading else slot.committed().copy()
        victim.needs_logits = reading and victim.score is None
        self._release(slot, keep=True)
        victim.slot = None
        victim.n_fed = 0
        victim.wait_for = None
        self._running.remove(victim)
        self._waiting.appendleft(victim)

    def _fail_running(self, rc: int) -> None:
        err = UpstreamError(f"local engine: llama_decode failed ({rc})", status=503,
                            code="engine_failed")
        for seq in list(self._running):
            seq.handle.push(Failed(err))
            self._finish(seq, None)
        self.ctx.clear()
        for slot in self._slots:
            slot.n = 0

    def _fail_all(self, err: ManxueError) -> None:
        for seq in list(self._running) + list(self._waiting):
            seq.handle.push(Failed(err))
            self._finish(seq, None)
        while True:
            try:
                kind, handle = self._inbox.get_nowait()
            except queue.Empty:
                break
            if kind == "submit" and handle is not None:
                handle.push(Failed(err))
                handle.done = True
                self._touch(handle)
        self._deliver()

    def _shutdown(self) -> None:
        try:
            self._fail_all(UpstreamError("local engine is shutting down", status=503,
                                         code="engine_down"))
        except Exception:  # best effort at exit
            log.exception("local engine: failing requests at shutdown")

    def _touch(self, handle: Handle) -> None:
        if not handle.cancelled:
            self._wake.setdefault(handle.loop, []).append(handle)

    def _deliver(self) -> None:
        if not self._wake:
            return
        wake, self._wake = self._wake, {}
        for loop, handles in wake.items():
            with contextlib.suppress(RuntimeError):  # RuntimeError: that event loop is closed
                loop.call_soon_threadsafe(_wake_all, handles)


def _wake_all(handles: list[Handle]) -> None:
    for h in handles:
        h.wake()
