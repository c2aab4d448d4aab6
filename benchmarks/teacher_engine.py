"""One question request at a time, two engines: llama-cpp-python's ``create_chat_completion`` against the
parallel decoder with a single sequence (``embpipe.llm.parallel_decoding``, which samples under the JSON grammar
token-first and keeps the shared prompt prefix cached).

Both answer the question stage's real requests (the pipeline's prompt, schema and ``max_tokens``, temperature 0)
for the same chunks of a finished run's data folder, in alternating rounds so that a drift in the machine's speed
reaches both alike. Reported per engine: seconds per call, completion tokens, and how many replies are identical
to the other engine's.

    python benchmarks/teacher_engine.py --data data/benchmarks/techqa-default --chunks 12 --rounds 2

Writes ``benchmarks/results/teacher-engine-<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
ENGINES = ("llama_cpp", "decoder")


def question_requests(data: Path, count: int, seed: int) -> list[list[dict]]:
    """The question stage's messages for ``count`` chunks of the run in ``data`` (the corpus notes left out)."""
    from embpipe.core.synthesis.question_prompts import question_messages
    from embpipe.core.synthesis.questions import select_chunks

    chunks = pd.read_parquet(data / "assets" / "chunks.parquet")
    documents = pd.read_parquet(data / "assets" / "documents.parquet")
    notes = documents.loc[documents["path"].str.endswith("SOURCE.md"), "doc_id"]
    sample = select_chunks(chunks[~chunks["doc_id"].isin(notes)], count, 20, seed)
    return [question_messages(str(c.title), str(c.text), 3) for c in sample.itertuples()]


def engine_calls(llama, decoder, params: dict):
    """Per engine, a function from messages to (reply text, completion tokens)."""
    from embpipe.llm.local_runtime import chat_prompt_tokens, decoded_completion
    from embpipe.llm.parallel_decoding import decode_request

    def through_llama_cpp(messages: list[dict]) -> tuple[str, int]:
        reply = llama.create_chat_completion(messages=messages, **params)
        return reply["choices"][0]["message"]["content"], reply["usage"]["completion_tokens"]

    def through_decoder(messages: list[dict]) -> tuple[str, int]:
        request = decode_request(chat_prompt_tokens(llama, messages), params, llama.n_ctx())
        reply = decoded_completion(decoder.complete([request])[0])
        return reply["choices"][0]["message"]["content"], reply["usage"]["completion_tokens"]

    return {"llama_cpp": through_llama_cpp, "decoder": through_decoder}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REPO / "data" / "benchmarks" / "techqa-default"))
    parser.add_argument("--name", default="techqa")
    parser.add_argument("--chunks", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of every request per engine")
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    from embpipe.core.synthesis.question_prompts import question_schema
    from embpipe.llm.local_runtime import LocalRuntime
    from embpipe.llm.parallel_decoding import ParallelDecoder

    asks = question_requests(Path(args.data), args.chunks + 1, args.seed)
    schema = {"type": "json_object", "schema": question_schema(3)}
    params = {"temperature": 0.0, "max_tokens": 3 * 64 + 32, "response_format": schema}
    runtime = LocalRuntime(n_threads=args.threads)
    llama = runtime.model(args.model)
    decoder = ParallelDecoder(llama, 1, llama.n_ctx())
    calls = engine_calls(llama, decoder, params)
    for call in calls.values():  # the system prompt cached by both before the clock
        call(asks[0])
    seconds: dict[str, list[float]] = {e: [] for e in ENGINES}
    replies: dict[str, list[tuple[str, int]]] = {e: [] for e in ENGINES}
    for round_number in range(args.rounds):
        for engine in ENGINES if round_number % 2 == 0 else ENGINES[::-1]:
            started = time.perf_counter()
            replies[engine] = [calls[engine](messages) for messages in asks[1:]]
            seconds[engine].append(time.perf_counter() - started)
            print(f"round {round_number + 1} {engine}: {seconds[engine][-1]:.1f} s", flush=True)
    decoder.close()
    runtime.close()
    identical = sum(a[0] == b[0] for a, b in zip(replies["llama_cpp"], replies["decoder"], strict=True))
    result = {
        "data": str(args.data),
        "model": args.model,
        "threads": args.threads,
        "calls_per_round": len(asks) - 1,
        "rounds": args.rounds,
        "engines": {
            engine: {
                "seconds_per_round": [round(s, 1) for s in seconds[engine]],
                "seconds_per_call": round(statistics.median(seconds[engine]) / (len(asks) - 1), 2),
                "completion_tokens": sum(tokens for _, tokens in replies[engine]),
            }
            for engine in ENGINES
        },
        "identical_replies": identical,
        "examples": {engine: [text for text, _ in replies[engine][:3]] for engine in ENGINES},
    }
    path = RESULTS / f"teacher-engine-{args.name}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "examples"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
