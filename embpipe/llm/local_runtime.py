"""The offline teacher's engine: a GGUF model run by llama-cpp-python inside the local teacher server.

Only ``embpipe.llm.local_server`` (a process of its own, so that a native crash cannot take a run with it)
loads models through this module. Model strings look like ``local/qwen2.5-coder-1.5b`` (see
``model_weights.LOCAL_MODELS``). A llama context is not thread-safe, so calls are serialised; with ``parallel``
> 1, generation requests that arrive together are decoded together instead, as parallel sequences of a second
context (``parallel_decoding``; several replies for little more than the time of one on a CPU; a reply then
depends a little on which requests shared its batch, so the teacher sends a stage's calls in waves, ``waves``,
and each wave is decoded as one batch whenever it arrives). By default the
context is kept between calls so that llama.cpp reuses the shared prompt prefix (the system prompt), which
saves several seconds per call on a CPU; replies are reproducible through the response cache.
``reset_each_call`` recomputes every prompt from scratch instead, for bit-exact recomputation regardless of
call history. JSON replies are constrained by llama.cpp's grammar when the request carries
``response_format={"type": "json_object", "schema": …}``; a request with ``top_logprobs`` and ``max_tokens=1``
(a judge asking for one word) is answered from the next-token distribution of the prompt, read directly from
llama.cpp's last logits: the most likely token and the ``top_logprobs`` best tokens with their log-
probabilities, in OpenAI's format. This needs no ``logits_all`` buffer (n_ctx × vocabulary floats), and reuses
the shared prompt prefix like any other call.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

from embpipe.llm.batch_queue import BatchQueue
from embpipe.llm.model_weights import require_model, spec_for
from embpipe.llm.parallel_decoding import Decoded, DecodeRequest, ParallelDecoder, decode_request
from embpipe.llm.waves import Seat

JUDGEMENTS_PER_BATCH = 64  # seated judgements are answered one by one: a batch only fixes their order
PASSED_PARAMS = ("temperature", "max_tokens", "seed", "response_format", "logprobs", "top_logprobs", "stop")


@dataclass
class LocalRuntime:
    """Loaded llama models by name, with the thread count used for generation and prompt processing."""

    n_threads: int = 1
    reset_each_call: bool = False
    parallel: int = 1  # replies decoded together (llama.cpp parallel sequences); 1 = one at a time
    models: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    queues: dict[tuple[str, str], BatchQueue] = field(default_factory=dict)
    decoders: dict[str, ParallelDecoder] = field(default_factory=dict)

    def model(self, name: str):
        """The loaded ``llama_cpp.Llama`` for ``name`` (loaded once per process)."""
        if name not in self.models:
            try:
                from llama_cpp import Llama
            except ImportError as error:
                raise ImportError(
                    "The local teacher needs llama-cpp-python: bash scripts/install.sh "
                    "(or pip install 'embpipe[local]')"
                ) from error
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            self.models[name] = Llama(
                model_path=str(require_model(name)),
                n_ctx=spec_for(name).context_length,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads,
                seed=0,
                verbose=False,
                logits_all=False,
            )
        return self.models[name]

    def close(self) -> None:
        """Free every loaded model (called at interpreter exit, before llama.cpp's globals go away)."""
        for batches in self.queues.values():
            batches.close()
        with self.lock:
            for decoder in self.decoders.values():
                decoder.close()
            for llama in self.models.values():
                llama.close()
            self.queues.clear(), self.decoders.clear(), self.models.clear()

    def chat(self, name: str, messages: list[dict], params: dict[str, Any], seat: Seat | None = None) -> dict:
        """An OpenAI-style chat completion dict from the local model. With ``parallel`` > 1 a generation request
        with a ``seat`` is decoded with the rest of its wave (``batch_queue``), and a next-token judgement with a
        ``seat`` is answered after the judgements ordered before it in its wave: the model's context reuses the
        previous prompt's prefix, so the order of judgements is part of their arithmetic."""
        next_token = bool(params.get("top_logprobs")) and params.get("max_tokens") == 1
        if next_token and seat is not None and not self.reset_each_call:
            return self.queue(name, "judgements").submit((messages, int(params["top_logprobs"])), seat)
        with self.lock:
            llama = self.model(name)
            if self.reset_each_call:
                llama.reset()
            if next_token:
                return next_token_completion(llama, messages, int(params["top_logprobs"]))
            if self.parallel > 1 and not params.get("logprobs") and not self.reset_each_call:
                request = decode_request(chat_prompt_tokens(llama, messages), params, llama.n_ctx())
            else:
                return llama.create_chat_completion(messages=messages, **params)
        if len(request.tokens) >= llama.n_ctx():
            raise ValueError(f"Requested tokens ({len(request.tokens)}) exceed context window of {llama.n_ctx()}")
        return decoded_completion(self.queue(name, "replies").submit(request, seat))

    def answered(self) -> dict[str, int]:
        """Waves and loose batches the parallel decoders answered so far (all models)."""
        counts = [queue.answered for queue in self.queues.values()]
        return {kind: sum(c[kind] for c in counts) for kind in ("waves", "loose_batches")}

    def queue(self, name: str, kind: str) -> BatchQueue:
        """The queue whose worker answers ``name``'s pending ``replies`` (decoded together) or seated
        ``judgements`` (one after another, in seat order); made on first use."""
        with self.lock:
            if (name, kind) not in self.queues:
                llama = self.model(name)
                if kind == "replies":
                    self.decoders[name] = ParallelDecoder(llama, self.parallel, llama.n_ctx())
                    answer, size = (lambda requests: self.decode(name, requests)), self.parallel
                else:
                    answer, size = (lambda asks: [self.judge(name, *ask) for ask in asks]), JUDGEMENTS_PER_BATCH
                self.queues[(name, kind)] = BatchQueue(answer, size)
            return self.queues[(name, kind)]

    def decode(self, name: str, requests: list[DecodeRequest]) -> list[Decoded]:
        with self.lock:
            return self.decoders[name].complete(requests)

    def judge(self, name: str, messages: list[dict], top: int) -> dict:
        with self.lock:
            return next_token_completion(self.model(name), messages, top)


def decoded_completion(decoded: Decoded) -> dict:
    """A parallel decoder's reply in the shape of llama-cpp-python's chat completion."""
    return {
        "choices": [{"message": {"content": decoded.text}, "finish_reason": decoded.finish_reason}],
        "usage": {"prompt_tokens": decoded.prompt_tokens, "completion_tokens": decoded.completion_tokens},
    }


def chat_prompt_tokens(llama, messages: list[dict]) -> list[int]:
    """``messages`` rendered with the model's own chat template (generation prompt added) and tokenized."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        raise ValueError("this GGUF has no chat template; next-token judgements need one")
    eos, bos = llama.token_eos(), llama.token_bos()
    formatter = Jinja2ChatFormatter(
        template=template,
        eos_token=llama._model.token_get_text(eos) if eos != -1 else "",
        bos_token=llama._model.token_get_text(bos) if bos != -1 else "",
    )
    prompt = formatter(messages=messages).prompt
    return llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)


def evaluate_prompt(llama, tokens: list[int]) -> None:
    """Bring the context to ``tokens``, re-evaluating only what differs from the cached prefix (≥ 1 token)."""
    cached = llama.input_ids[: llama.n_tokens].tolist()
    shared = 0
    for old, new in zip(cached, tokens, strict=False):
        if old != new:
            break
        shared += 1
    llama.n_tokens = min(shared, len(tokens) - 1)
    llama.eval(tokens[llama.n_tokens :])


def next_token_completion(llama, messages: list[dict], top: int) -> dict:
    """A one-token completion with the ``top`` most likely next tokens and their log-probabilities."""
    import numpy as np

    tokens = chat_prompt_tokens(llama, messages)
    evaluate_prompt(llama, tokens)
    logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama.n_vocab(),)).astype(np.float64)
    logprobs = logits - logits.max()
    logprobs -= np.log(np.exp(logprobs).sum())
    best = np.argsort(-logprobs)[:top]
    entries = [
        {"token": llama.detokenize([int(t)]).decode("utf-8", "replace"), "logprob": float(logprobs[t])} for t in best
    ]
    content = [{**entries[0], "top_logprobs": entries}]
    return {
        "choices": [{"message": {"content": entries[0]["token"]}, "logprobs": {"content": content}}],
        "usage": {"prompt_tokens": len(tokens), "completion_tokens": 1},
    }


def request_params(optional_params: dict[str, Any]) -> dict[str, Any]:
    """The request parameters llama-cpp-python understands, taken from litellm's optional params."""
    params = {k: optional_params[k] for k in PASSED_PARAMS if optional_params.get(k) is not None}
    if params.get("top_logprobs") and not params.get("logprobs"):
        params["logprobs"] = True
    return params


def model_name(model: str) -> str:
    """``local/qwen2.5-coder-1.5b`` or ``qwen2.5-coder-1.5b`` → ``qwen2.5-coder-1.5b``."""
    return model.split("/", 1)[1] if model.startswith("local/") else model
