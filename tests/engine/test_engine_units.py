"""Pieces of the engine that need no model: sampling, stop strings, reasoning, templates, cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from manxue.engine.chat_template import GENERIC_CHATML, ChatTemplate, detect
from manxue.engine.model_file import cpu_has_amx, use_repack
from manxue.engine.options import EngineOptions
from manxue.engine.prefix_cache import PrefixCache, common_prefix
from manxue.engine.reasoning import ReasoningSplitter
from manxue.engine.sampling import SamplingParams, SequenceSampler, sample_batch
from manxue.engine.text_stream import StopFilter, Utf8Text
from manxue.errors import ConfigError, InvalidParameters, InvalidRequest


def _logits(rows: int, vocab: int = 1000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, vocab)).astype(np.float32) * 3


def test_greedy_and_seeded_draws_repeat() -> None:
    base = _logits(3)
    params = [SamplingParams(temperature=0), SamplingParams(temperature=0.9, seed=7),
              SamplingParams(temperature=1.3, top_p=0.9, top_k=50, min_p=0.01, seed=11)]
    first, _ = sample_batch(base.copy(), [SequenceSampler(p) for p in params])
    again, _ = sample_batch(base.copy(), [SequenceSampler(p) for p in params])
    assert first == again
    assert first[0] == int(base[0].argmax())


def test_filters_keep_only_allowed_tokens() -> None:
    row = np.full((1, 100), -10.0, dtype=np.float32)
    row[0, [3, 5, 9]] = [5.0, 4.9, 1.0]
    for seed in range(30):
        (tok,), _ = sample_batch(row.copy(), [SequenceSampler(SamplingParams(top_k=2, seed=seed))])
        assert tok in (3, 5)
        (tok,), _ = sample_batch(row.copy(), [SequenceSampler(SamplingParams(top_p=0.5, seed=seed))])
        assert tok == 3
        (tok,), _ = sample_batch(row.copy(), [SequenceSampler(SamplingParams(min_p=0.5, seed=seed))])
        assert tok in (3, 5)


def test_penalties_and_bias_change_the_pick() -> None:
    row = np.zeros((1, 10), dtype=np.float32)
    row[0, 4] = 1.0
    s = SequenceSampler(SamplingParams(temperature=0, presence_penalty=2.0))
    s.observe(4)
    (tok,), _ = sample_batch(row.copy(), [s])
    assert tok != 4
    b = SequenceSampler(SamplingParams(temperature=0, logit_bias=((7, 5.0),)))
    (tok,), _ = sample_batch(row.copy(), [b])
    assert tok == 7


def test_logprobs_are_normalised_and_sorted() -> None:
    base = _logits(1)
    s = SequenceSampler(SamplingParams(temperature=0, logprobs=True, top_logprobs=5))
    (tok,), (lp,) = sample_batch(base.copy(), [s])
    assert lp is not None and len(lp.top) == 5
    values = [v for _, v in lp.top]
    assert values == sorted(values, reverse=True)
    assert lp.top[0][0] == tok and lp.logprob == pytest.approx(values[0])
    full = base[0] - np.log(np.exp(base[0] - base[0].max()).sum()) - base[0].max()
    assert lp.logprob == pytest.approx(float(full[tok]), abs=1e-4)


def test_sampling_params_validation() -> None:
    p = SamplingParams.from_body({"max_completion_tokens": 5, "stop": "x", "seed": 3}, 100)
    assert p.max_tokens == 5 and p.stop == ("x",) and p.seed == 3
    for bad in ({"n": 2}, {"temperature": 3}, {"top_logprobs": 2}, {"stop": [1]},
                {"logit_bias": {"100": 1}}, {"max_tokens": 0}, {"seed": "x"}):
        with pytest.raises(InvalidParameters):
            SamplingParams.from_body(bad, 100)


def test_stop_filter_across_pieces() -> None:
    f: StopFilter[int] = StopFilter(("END",))
    shown = []
    for i, piece in enumerate(["Hello E", "N", "D tail"]):
        segs, hit = f.feed(piece, i)
        shown += segs
        if hit:
            break
    assert hit
    assert "".join(t for t, _ in shown) == "Hello "
    assert [i for _, i in shown if i is not None] == [0]


def test_stop_filter_releases_false_alarm() -> None:
    f: StopFilter[int] = StopFilter(("END",))
    a, _ = f.feed("x E", 0)
    b, _ = f.feed("ND", 1)
    assert "".join(t for t, _ in a) == "x " and b == []
    f2: StopFilter[int] = StopFilter(("END",))
    a2, _ = f2.feed("x E", 0)
    c, hit = f2.feed("X", 1)
    assert not hit and "".join(t for t, _ in c) == "EX"
    assert [i for _, i in a2 + c if i is not None] == [0, 1]


def test_utf8_split_over_tokens() -> None:
    u = Utf8Text()
    data = "é€".encode()
    out = "".join(u.feed(data[i:i + 1]) for i in range(len(data)))
    assert out + u.finish() == "é€"


def test_reasoning_split() -> None:
    s = ReasoningSplitter()
    parts = [s.feed(x) for x in [" <thi", "nk>plan ", "it</th", "ink>\n\nAnswer", "!"]]
    parts.append(s.finish())
    assert "".join(r for r, _ in parts) == "plan it"
    assert "".join(c for _, c in parts) == "Answer!"
    plain = ReasoningSplitter()
    assert plain.feed("Hi <think>") == ("", "Hi <think>")
    inside = ReasoningSplitter(start_inside=True)
    assert inside.feed("a</think>b") == ("a", "b")
    off = ReasoningSplitter(enabled=False)
    assert off.feed("<think>x</think>") == ("", "<think>x</think>")


def test_chat_templates() -> None:
    msgs = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    generic = ChatTemplate.resolve("chatml", None)
    assert generic.kind == "chatml" and generic.source == GENERIC_CHATML
    assert ChatTemplate.resolve("auto", None, detected="chatml").source == GENERIC_CHATML
    assert generic.render(msgs) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert ChatTemplate.resolve("llama3", None, bos_token="<s>").render(msgs).startswith(
        "<s><|start_header_id|>user")
    assert ChatTemplate.resolve("{{ messages[0].content }}!", None).render(msgs) == "Hi!"
    with pytest.raises(ConfigError):
        ChatTemplate.resolve("no-such-template", None)
    with pytest.raises(InvalidParameters):
        generic.render([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}])
    unknown = ChatTemplate.resolve("auto", None)  # no template, nothing identified
    assert unknown.kind == "none"
    with pytest.raises(InvalidParameters, match="chat_template") as no:
        unknown.render(msgs)
    assert no.value.code == "no_chat_template"


def test_templates_in_hugging_face_dialect() -> None:
    """`{% generation %}` blocks render their body; `tojson` takes a filter's generator; a
    template failing on the messages' shape (a filter given the wrong type) is a 400."""
    marked = ChatTemplate("{% for m in messages %}{% generation %}[{{ m.content }}]"
                          "{% endgeneration %}{% endfor %}", "gguf")
    assert marked.render([{"role": "user", "content": "Hi"}]) == "[Hi]"
    listed = ChatTemplate("{{ tools | map(attribute='name') | tojson }}", "gguf")
    assert listed.render([{"role": "user", "content": "x"}],
                         tools=[{"name": "a"}, {"name": "b"}]) == '["a", "b"]'
    strict = ChatTemplate("{% for k, v in messages[0].content | items %}{{ k }}{% endfor %}", "gguf")
    with pytest.raises(InvalidRequest, match="chat template refused"):
        strict.render([{"role": "user", "content": "not a mapping"}])


def test_a_template_is_detected_from_the_architecture_and_vocabulary() -> None:
    vocab = {"<|im_start|>", "<|eot_id|>", "<|start_header_id|>", "<｜end▁of▁sentence｜>"}

    def has(*tokens: str):
        return lambda text: text in tokens

    assert detect("gemma3", {}, has()) == "gemma"
    assert detect("llama", {}, has("<|eot_id|>", "<|start_header_id|>")) == "llama3"
    assert detect("llama", {}, has(*vocab - {"<|start_header_id|>"})) == "deepseek"
    assert detect("qwen2", {}, has()) == "chatml"
    assert detect("llama", {}, has("<|im_start|>")) == "chatml"
    assert detect("deepseek2", {}, has()) == "deepseek"
    assert detect("mamba", {}, has()) is None


def test_options() -> None:
    o = EngineOptions.from_mapping({"n_ctx": 1024, "flash_attn": "false", "prefix_cache_dir": "/x"})
    assert o.n_ctx == 1024 and o.flash_attn is False
    with pytest.raises(ConfigError):
        EngineOptions.from_mapping({"n_cxt": 1})
    with pytest.raises(ConfigError):
        EngineOptions.from_mapping({"n_parallel": "many"})
    assert EngineOptions().weight_repack == "auto"
    with pytest.raises(ConfigError, match="weight_repack must be"):
        EngineOptions.from_mapping({"weight_repack": "sometimes"})


def test_weights_are_not_repacked_for_amx_kernels() -> None:
    """llama.cpp's AMX matrix product crashes on prompts past a few tokens: "auto" keeps
    weights out of AMX tiles on CPUs that have it, and repacks elsewhere."""
    assert use_repack("on") is True and use_repack("off") is False
    assert use_repack("auto") is (not cpu_has_amx())


def test_prefix_cache_lru_and_disk(tmp_path: Path) -> None:
    def toks(*xs: int) -> np.ndarray:
        return np.array(xs, dtype=np.int32)

    c = PrefixCache(ram_bytes=250, min_tokens=2, directory=tmp_path, disk_bytes=10_000)
    assert c.add(toks(1, 2, 3), bytearray(b"a" * 100))
    assert not c.add(toks(1, 2), bytearray(b"b" * 100))  # covered by (1, 2, 3)
    assert c.add(toks(1, 2, 3, 4), bytearray(b"c" * 100))  # supersedes (1, 2, 3)
    assert len(c) == 1
    assert c.add(toks(5, 6), bytearray(b"d" * 100))
    assert c.add(toks(7, 8), bytearray(b"e" * 100))  # over the RAM budget: oldest leaves RAM
    entry, n = c.match(toks(1, 2, 3, 9))
    assert entry is not None and n == 3
    assert c.state_of(entry) == bytearray(b"c" * 100)  # read back from disk
    c.close()
    again = PrefixCache(ram_bytes=250, min_tokens=2, directory=tmp_path, disk_bytes=10_000)
    entry, n = again.match(toks(7, 8, 1))
    assert entry is not None and n == 2 and again.state_of(entry) == bytearray(b"e" * 100)
    again.close()
    assert common_prefix(toks(1, 2), toks(1, 3)) == 1
