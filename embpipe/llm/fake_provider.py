"""A deterministic teacher for tests and dry runs, routed through litellm like any other provider.

``fake/<behaviour>`` replies depend only on the request: question requests (a JSON schema with a
``questions`` array) get questions built from the words of the passage after ``PASSAGE:``; any other JSON
schema gets its smallest valid instance; plain chat gets an echo. Token usage is one token per four
characters, so budget tests can predict it. Two behaviours model a bad teacher: ``fake/invalid-json``
(text that is not JSON) and ``fake/wrong-shape`` (valid JSON without the asked-for fields).
"""

from __future__ import annotations

import json
import re
from typing import Any

from embpipe.core.chunking import split_sentences

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


def fake_reply(messages: list[dict], schema: dict[str, Any] | None, behaviour: str = "teacher") -> str:
    """The reply to a request: questions, a minimal schema instance, or an echo."""
    if behaviour == "invalid-json":
        return "Sure! Here are the questions: 1. What"
    if behaviour == "wrong-shape":
        return json.dumps({"answer": 42})
    last = str(messages[-1].get("content", "")) if messages else ""
    if schema is None:
        return f"echo: {last[:200]}"
    questions = schema.get("properties", {}).get("questions")
    if questions is not None:
        passage = last.split("PASSAGE:", 1)[-1]
        count = int(questions.get("maxItems", 2))
        return json.dumps({"questions": fake_questions(passage, count)})
    return json.dumps(minimal_instance(schema))


def _custom_llm_base():
    from litellm import CustomLLM

    return CustomLLM


class FakeTeacherProvider(_custom_llm_base()):
    """litellm handler for ``fake/…`` model strings."""

    def completion(self, *args: Any, **kwargs: Any):
        from embpipe.llm.responses import model_response

        messages = kwargs["messages"]
        response_format = (kwargs.get("optional_params") or {}).get("response_format") or {}
        text = fake_reply(messages, response_format.get("schema"), kwargs["model"].split("/")[-1])
        prompt_chars = sum(len(str(m.get("content", ""))) for m in messages)
        return model_response(f"fake/{kwargs['model']}", text, prompt_chars // 4 + 1, len(text) // 4 + 1)
