"""The chat page: streamed answers from the embedded model, reasoning, usage and cost, errors,
stop, regenerate, conversations kept in the browser."""

from __future__ import annotations

from typing import Any

from manxue.testing.deepseek_emulator import Behavior
from tests.web.conftest import LOCAL, REASONER, Browser, Site


def _start(browser: Browser, key: str, model: str, max_tokens: int | None = None) -> Any:
    page = browser.open("/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_label("Model", exact=True).select_option(model)
    if max_tokens is not None:
        page.get_by_text("Options").click()
        page.get_by_label("Max tokens").fill(str(max_tokens))
    return page


def _send(page: Any, text: str) -> Any:
    page.get_by_role("textbox", name="Message").fill(text)
    page.keyboard.press("Enter")
    answer = page.locator("article.msg.assistant[data-done]").last
    answer.wait_for()
    return answer


def test_chat_streams_an_answer_from_the_embedded_model(browser: Browser, site: Site) -> None:
    page = _start(browser, site.key, LOCAL, max_tokens=12)
    answer = _send(page, "Say hello in one short sentence.")
    assert answer.locator(".content").inner_text().strip()
    assert int(answer.get_attribute("data-chunks") or 0) > 2  # many SSE events, not one body
    meta = answer.locator(".meta").inner_text()
    assert "completion tokens" in meta and "cost 0.0" in meta and "USD" in meta, meta
    assert page.get_by_role("status").filter(has_text="Answer complete").count() == 1


def test_reasoning_markdown_code_and_saved_conversation(browser: Browser, site: Site) -> None:
    raw = site.chat(site.key, REASONER, "hi", stream=True).text
    assert ": keep-alive" in raw  # the page below reads such a stream
    page = _start(browser, site.key, REASONER)
    answer = _send(page, "Show a Python greeting:\n\n```python\nprint('hello, world')\n```\n\n"
                         "in **one** line.")
    reasoning = answer.locator("details.reasoning")
    assert "friendly reply" in (reasoning.text_content() or "")
    assert reasoning.get_attribute("open") is None  # folded once the answer is there
    reasoning.locator("summary").click()
    assert reasoning.get_attribute("open") is not None
    assert answer.locator("pre code.hljs.language-python .hljs-built_in").inner_text() == "print"
    assert answer.locator(".content strong").inner_text() == "one"
    assert "reasoning" in answer.locator(".meta").inner_text()
    browser.screenshot("chat.png")

    answer = _send(page, "![a picture](http://example.com/x.png) <img src=http://example.com/y.png>")
    assert answer.locator(".content img").count() == 0  # an answer cannot make the page fetch
    assert answer.locator(".content a[href='http://example.com/x.png']").count() == 1

    page.reload()  # kept in localStorage
    assert page.locator("#conv-list li").count() == 1
    assert page.locator("article.msg").count() == 4
    assert page.locator("article.msg.assistant pre code.hljs").count() == 1

    page.get_by_role("button", name="Regenerate").click()
    page.locator("article.msg.assistant[data-done]").wait_for()
    assert page.locator("article.msg").count() == 4  # the last answer replaced, not added


def test_stop_keeps_the_partial_answer(browser: Browser, site: Site) -> None:
    page = _start(browser, site.key, LOCAL, max_tokens=400)
    page.get_by_role("textbox", name="Message").fill("Write a long story about a cat.")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => Number(document.querySelector('article.msg.assistant')?.dataset.chunks || 0) > 3")
    page.get_by_role("button", name="Stop").click()
    answer = page.locator("article.msg.assistant[data-done]")
    answer.wait_for()
    assert "stopped" in answer.locator(".meta").inner_text()
    assert answer.locator(".content").inner_text().strip()
    assert page.get_by_role("button", name="Send").is_enabled()


def test_empty_balance_shows_a_402_message(browser: Browser, site: Site) -> None:
    broke = site.create_key(tenant="broke", balance="0")["key"]
    page = _start(browser, broke, LOCAL, max_tokens=8)
    page.get_by_role("textbox", name="Message").fill("hello")
    page.keyboard.press("Enter")
    alert = page.get_by_role("alert")
    alert.wait_for()
    text = alert.inner_text()
    assert "402" in text and "balance" in text.lower(), text
    assert page.locator("article.msg.assistant").count() == 0
    assert page.locator("article.msg.user").count() == 1  # kept, to regenerate after a top-up


def test_wrong_key_shows_a_401_message(browser: Browser, site: Site) -> None:
    page = browser.open("/")
    page.get_by_label("API key").fill("sk-mx-not-a-key")
    page.get_by_role("button", name="Save", exact=True).click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "401" in alert.inner_text()


def test_rate_limit_and_busy_upstream_messages(browser: Browser, site: Site) -> None:
    limited = site.create_key(tenant="slow", balance="1", rpm=1)["key"]
    page = _start(browser, limited, REASONER)
    _send(page, "first")
    page.get_by_role("textbox", name="Message").fill("second")
    page.keyboard.press("Enter")
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "429" in alert.inner_text() and "Try again in" in alert.inner_text()

    site.emulator.push(*[Behavior(status=503)] * 8)
    try:
        page = _start(browser, site.key, REASONER)
        page.get_by_role("textbox", name="Message").fill("are you there?")
        page.keyboard.press("Enter")
        alert = page.get_by_role("alert")
        alert.wait_for()
        assert "503" in alert.inner_text() and "busy" in alert.inner_text().lower()
    finally:
        site.emulator.script.clear()
