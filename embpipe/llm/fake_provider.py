"""A deterministic teacher for tests and dry runs, routed through litellm like any other provider.

``fake/<behaviour>`` replies depend only on the request: question requests (a JSON schema with a
``questions`` array) get questions built from the words of the passage after ``PASSAGE:`` (cluster questions
cite passage 1; forum-post requests get those questions as titles, with the passage's opening words as bodies),
summary requests a summary of the passages' words, entity requests one entity per early sentence, EmbGen's
single cited question cites every passage and answers with passage 1's first sentence; any other JSON schema
gets its smallest valid instance; relevance judgements ("Yes or No") answer Yes when most content words of the
question occur in the passage, with log-probabilities from that overlap when they are asked for; "same topic"
questions likewise by the share of PASSAGE 1's words found in PASSAGE 2; "A or B" closeness questions answer by
the anchor's word overlap with each passage, leaning towards "A" by ``POSITION_BIAS`` as small real models do
(so position-bias handling is tested); plain chat gets an echo.
Token usage is one token per four characters, so budget tests can predict it.

Faults, for reliability tests, are chosen by the model name ``fake/<fault>``: ``invalid-json``,
``wrong-shape`` (JSON without the asked-for fields), ``empty``, ``out-of-range`` (numbers far outside the
schema's bounds), ``timeout``, ``rate-limit`` (HTTP 429), ``connection-error``; ``fake/<fault>-once`` shows
the fault only the first time each distinct conversation arrives (whatever the sampling parameters), then
answers normally; ``fake/slow`` answers normally after a short delay; ``fake/no-logprobs`` answers
normally but never returns log-probabilities.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from typing import Any

from embpipe.text import split_sentences

SLOW_SECONDS = 0.25
POSITION_BIAS = 0.15
STOPWORDS = frozenset("the a an and or of to in on for with is are was be by this that it as at from".split())


def fake_questions(passage: str, count: int) -> list[str]:
    """Questions made of the content words of the passage's first sentences."""
    questions = []
    for sentence in split_sentences(passage)[: max(count, 1)]:
        words = [w for w in re.findall(r"[A-Za-z0-9-]+", sentence) if w.lower() not in STOPWORDS]
        if words:
            questions.append("What about " + " ".join(words[:8]).lower() + "?")
    return questions[:count]


def minimal_instance(schema: dict[str, Any]) -> Any:
    """The smallest value that satisfies a simple JSON schema."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {name: minimal_instance(sub) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [minimal_instance(schema.get("items", {})) for _ in range(schema.get("minItems", 1))]
    if kind in {"number", "integer"}:
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    return "fake"


def out_of_range_instance(schema: dict[str, Any]) -> Any:
    """A schema instance whose numbers lie far outside their bounds."""
    kind = schema.get("type")
    if kind == "object":
        return {name: out_of_range_instance(sub) for name, sub in schema.get("properties", {}).items()}
    if kind in {"number", "integer"}:
        return schema.get("maximum", 1) * 10 + 7
    return minimal_instance(schema)


def faulty_reply(fault: str, schema: dict[str, Any] | None) -> str | None:
    """The reply of a content fault, ``None`` for other behaviours; transport faults raise."""
    import litellm

    content = {
        "invalid-json": "Sure! Here are the questions: 1. What",
        "wrong-shape": json.dumps({"answer": 42}),
        "empty": "",
        "out-of-range": json.dumps(out_of_range_instance(schema or {})),
    }
    if fault in content:
        return content[fault]
    if fault == "timeout":
        raise litellm.Timeout("fake teacher timed out", model="fake", llm_provider="fake")
    if fault == "rate-limit":
        raise litellm.RateLimitError("429: fake teacher rate limit", llm_provider="fake", model="fake")
    if fault == "connection-error":
        raise litellm.APIConnectionError("fake teacher unreachable", llm_provider="fake", model="fake")
    return None


def content_words(text: str) -> set[str]:
    """Lower-cased words of ``text`` that are not stopwords."""
    return {w.lower() for w in re.findall(r"[A-Za-z0-9-]+", text) if w.lower() not in STOPWORDS}


def judge_overlap(prompt: str) -> float:
    """Share of the QUESTION's (or PASSAGE 1's) content words found in the PASSAGE (or PASSAGE 2), in [0.02, 0.98]."""
    if "PASSAGE 1:" in prompt:
        question = prompt.split("PASSAGE 1:", 1)[-1].split("PASSAGE 2:", 1)[0]
        passage = prompt.split("PASSAGE 2:", 1)[-1].split("Are these two passages", 1)[0]
    else:
        question = prompt.split("QUESTION:", 1)[-1].split("PASSAGE:", 1)[0]
        passage = prompt.split("PASSAGE:", 1)[-1]
    asked = content_words(question) - {"what", "about", "how", "does", "do", "which", "why"}
    share = len(asked & content_words(passage)) / max(len(asked), 1)
    return min(max(share, 0.02), 0.98)


def binary_logprobs(tokens: tuple[str, str], p_first: float, top: int) -> list[dict]:
    """OpenAI-style log-probabilities of a one-token answer that is ``tokens[0]`` with probability ``p_first``."""
    entries = sorted(
        [{"token": tokens[0], "logprob": math.log(p_first)}, {"token": tokens[1], "logprob": math.log(1 - p_first)}],
        key=lambda e: -e["logprob"],
    )[:top]
    return [{**entries[0], "top_logprobs": entries}]


def closer_probability(prompt: str) -> float:
    """P("A") for a closeness question: the anchor's word overlap with A against B, plus the position bias."""
    anchor = content_words(prompt.split("ANCHOR:", 1)[-1].split("PASSAGE A:", 1)[0])
    option_a = content_words(prompt.split("PASSAGE A:", 1)[-1].split("PASSAGE B:", 1)[0])
    option_b = content_words(prompt.split("PASSAGE B:", 1)[-1])
    shared_a, shared_b = len(anchor & option_a), len(anchor & option_b)
    share = shared_a / (shared_a + shared_b) if shared_a + shared_b else 0.5
    return min(max(share + POSITION_BIAS, 0.02), 0.98)


def is_closer_question(messages: list[dict]) -> bool:
    """Whether the request asks which of two passages is closer to an anchor."""
    return "ANCHOR:" in str(messages[-1].get("content", "")) if messages else False


def is_judgement(messages: list[dict]) -> bool:
    """Whether the request asks for a Yes/No relevance or same-topic judgement."""
    last = str(messages[-1].get("content", "")) if messages else ""
    asks = any("Yes or No" in str(m.get("content", "")) for m in messages)
    return asks and ("QUESTION:" in last or "PASSAGE 1:" in last)


def fake_reply(messages: list[dict], schema: dict[str, Any] | None) -> str:
    """The reply to a request: questions, a minimal schema instance, or an echo."""
    last = str(messages[-1].get("content", "")) if messages else ""
    if schema is None:
        return f"echo: {last[:200]}"
    properties = schema.get("properties", {})
    questions = properties.get("questions")
    if questions is not None and questions.get("items", {}).get("type") == "object":  # cited cluster questions
        passage = last.split("PASSAGES:", 1)[-1].split("[2]", 1)[0]
        count = int(questions.get("maxItems", 2))
        return json.dumps({"questions": [{"question": q, "passages": [1]} for q in fake_questions(passage, count)]})
    if questions is not None:
        passage = last.split("PASSAGE:", 1)[-1]
        count = int(questions.get("maxItems", 2))
        return json.dumps({"questions": fake_questions(passage, count)})
    if "posts" in properties:  # forum posts: each question as a title, the passage's opening words as the body
        passage = last.split("PASSAGE:", 1)[-1]
        body = "We run " + " ".join(passage.split()[:12]) + " and need help."
        count = int(properties["posts"].get("maxItems", 2))
        return json.dumps({"posts": [{"title": q, "body": body} for q in fake_questions(passage, count)]})
    if "summary" in properties:
        words = sorted(content_words(last.split("PASSAGES:", 1)[-1]))[:6]
        return json.dumps({"summary": "Passages about " + " ".join(words)})
    if "entities" in properties:
        return json.dumps({"entities": fake_entities(last.split("PASSAGE:", 1)[-1])})
    if {"question", "answer", "passages"} <= set(properties):
        return json.dumps(fake_cited_question(last.split("PASSAGES:", 1)[-1]))
    return json.dumps(minimal_instance(schema))


def fake_entities(passage: str) -> list[dict]:
    """Up to three entities: the longest content word of each early sentence, described by that sentence."""
    entities = []
    for sentence in split_sentences(passage)[:3]:
        words = sorted(content_words(sentence), key=lambda w: (-len(w), w))
        if words and len(sentence.strip()) >= 10:
            entities.append({"entity": words[0], "description": " ".join(sentence.split())[:300]})
    return entities


def fake_cited_question(passages: str) -> dict:
    """One question from passage 1's words, answered by its first sentence, citing every numbered passage."""
    numbers = [int(n) for n in re.findall(r"^\[(\d+)\]", passages, flags=re.MULTILINE)] or [1]
    first = passages.split("[2]", 1)[0].split("]", 1)[-1]
    question = (fake_questions(first, 1) or ["What about this topic?"])[0]
    answer = (split_sentences(first) or ["No answer."])[0].strip()[:300]
    return {"question": question, "answer": answer, "passages": numbers}


def _custom_llm_base():
    from litellm import CustomLLM

    return CustomLLM


class FakeTeacherProvider(_custom_llm_base()):
    """litellm handler for ``fake/…`` model strings."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()
        self.lock = threading.Lock()

    def fault_for(self, behaviour: str, request: str) -> str:
        """The fault to show for this request ("" for none), honouring ``-once``."""
        if not behaviour.endswith("-once"):
            return behaviour
        with self.lock:
            first = request not in self.seen
            self.seen.add(request)
        return behaviour.removesuffix("-once") if first else ""

    def completion(self, *args: Any, **kwargs: Any):
        from embpipe.llm.responses import model_response

        messages = kwargs["messages"]
        optional = kwargs.get("optional_params") or {}
        schema = (optional.get("response_format") or {}).get("schema")
        behaviour = kwargs["model"].split("/")[-1]
        if behaviour == "slow":
            time.sleep(SLOW_SECONDS)
        request = json.dumps([kwargs["model"], messages], sort_keys=True, default=str)
        text = faulty_reply(self.fault_for(behaviour, request), schema)
        logprobs = None
        wants_logprobs = bool(optional.get("top_logprobs")) and behaviour != "no-logprobs"
        if text is None and is_closer_question(messages):
            p_a = closer_probability(str(messages[-1].get("content", "")))
            text = "A" if p_a >= 0.5 else "B"
            if wants_logprobs:
                logprobs = {"content": binary_logprobs(("A", "B"), p_a, int(optional["top_logprobs"]))}
        elif text is None and is_judgement(messages):
            p_yes = judge_overlap(str(messages[-1].get("content", "")))
            text = "Yes" if p_yes >= 0.5 else "No"
            if wants_logprobs:
                logprobs = {"content": binary_logprobs(("Yes", "No"), p_yes, int(optional["top_logprobs"]))}
        elif text is None:
            text = fake_reply(messages, schema)
        prompt_chars = sum(len(str(m.get("content", ""))) for m in messages)
        return model_response(f"fake/{kwargs['model']}", text, prompt_chars // 4 + 1, len(text) // 4 + 1, logprobs)
