"""Parallel sequences of the local teacher: batches gathered from threads, and replies decoded side by side by
a real local model (SmolLM2-135M GGUF) that match what one-at-a-time decoding writes."""

from __future__ import annotations

import json
import threading
import time

import pytest

from embpipe.llm.batch_queue import BatchQueue
from embpipe.llm.model_weights import model_path


def test_requests_that_arrive_together_are_answered_in_one_batch_in_their_own_order():
    batches: list[list[int]] = []

    def answer(items: list[int]) -> list[int]:
        batches.append(items)
        time.sleep(0.2)  # while the first batch decodes, the others queue up
        return [n * 10 for n in items]

    queue = BatchQueue(answer, max_size=3, gather_s=0.1)
    results: dict[int, int] = {}
    threads = [threading.Thread(target=lambda n=n: results.__setitem__(n, queue.submit(n))) for n in range(7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.close()
    assert results == {n: n * 10 for n in range(7)}
    assert all(len(batch) <= 3 for batch in batches) and max(len(batch) for batch in batches) == 3
    assert sorted(n for batch in batches for n in batch) == list(range(7))


def test_an_error_in_a_batch_reaches_every_request_in_it_and_the_queue_goes_on():
    def answer(items: list[int]) -> list[int]:
        if 0 in items:
            raise ValueError("cannot answer 0")
        return items

    queue = BatchQueue(answer, max_size=1)
    with pytest.raises(ValueError, match="cannot answer 0"):
        queue.submit(0)
    assert queue.submit(5) == 5
    queue.close()


local_model = pytest.mark.skipif(
    not model_path("smollm2-135m").is_file(), reason="run scripts/install.sh to fetch SmolLM2"
)


@pytest.fixture(scope="module")
def smollm():
    from llama_cpp import Llama

    llama = Llama(model_path=str(model_path("smollm2-135m")), n_ctx=2048, n_threads=2, verbose=False)
    yield llama
    llama.close()


def messages(topic: str) -> list[dict]:
    return [
        {"role": "system", "content": "You write support questions about technotes."},
        {"role": "user", "content": f"Write 3 questions a user would ask about: {topic}"},
    ]


TOPICS = ("slow restore from tape", "licence key expired after an upgrade", "fan 3 alert H-052")


@pytest.mark.local_llm
@local_model
def test_a_reply_decoded_alone_is_the_one_llama_cpp_python_writes_with_or_without_a_grammar(smollm):
    from embpipe.core.synthesis.question_prompts import question_schema
    from embpipe.llm.local_runtime import chat_prompt_tokens
    from embpipe.llm.parallel_decoding import ParallelDecoder, decode_request

    schema = {"type": "json_object", "schema": question_schema(2)}
    for params in (
        {"temperature": 0.0, "max_tokens": 48},
        {"temperature": 0.0, "max_tokens": 64, "response_format": schema},
    ):
        smollm.reset()
        expected = smollm.create_chat_completion(messages=messages(TOPICS[0]), **params)["choices"][0]["message"]
        decoder = ParallelDecoder(smollm, sequences=2, context_per_sequence=1024)
        try:
            [reply] = decoder.complete([decode_request(chat_prompt_tokens(smollm, messages(TOPICS[0])), params, 512)])
        finally:
            decoder.close()
        assert reply.text == expected["content"] and reply.completion_tokens > 0


@pytest.mark.local_llm
@local_model
def test_replies_decoded_together_follow_their_schema_and_share_the_cached_prefix(smollm):
    from embpipe.core.synthesis.question_prompts import question_schema
    from embpipe.llm.local_runtime import chat_prompt_tokens
    from embpipe.llm.parallel_decoding import ParallelDecoder, decode_request

    params = {
        "temperature": 0.0,
        "max_tokens": 64,
        "response_format": {"type": "json_object", "schema": question_schema(2)},
    }
    prompts = [chat_prompt_tokens(smollm, messages(topic)) for topic in TOPICS]
    decoder = ParallelDecoder(smollm, sequences=3, context_per_sequence=1024)
    try:
        replies = decoder.complete([decode_request(tokens, params, 512) for tokens in prompts])
        shared = len(decoder.cached_prefix)
        short = decoder.complete([decode_request(tokens, {**params, "max_tokens": 3}, 512) for tokens in prompts[:2]])
    finally:
        decoder.close()
    for reply in replies:
        if reply.finish_reason == "stop":
            assert isinstance(json.loads(reply.text)["questions"], list)
        assert reply.text.lstrip().startswith("{")
    assert 10 < shared < min(len(tokens) for tokens in prompts)  # the system prompt and the instruction's start
    assert all(p[:shared] == prompts[0][:shared] for p in prompts)
    assert [r.finish_reason for r in short] == ["length", "length"] and all(r.completion_tokens == 3 for r in short)
