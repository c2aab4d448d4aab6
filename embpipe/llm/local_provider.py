"""The offline teacher: a GGUF model run in process by llama-cpp-python behind a litellm custom provider.

Model strings look like ``local/qwen2.5-coder-1.5b`` (see ``model_store.LOCAL_MODELS``). A llama context is
not thread-safe, so calls are serialised. By default the context is kept between calls so that llama.cpp
reuses the shared prompt prefix (the system prompt), which saves several seconds per call on a CPU; replies
are reproducible through the response cache. ``reset_each_call`` recomputes every prompt from scratch
instead, for bit-exact recomputation regardless of call history. JSON replies are constrained by
llama.cpp's grammar when the request carries ``response_format={"type": "json_object", "schema": …}``;
token log-probabilities are returned when ``logprobs``/``top_logprobs`` are asked for (judge tasks read them).
"""

from __future__ import annotations

import atexit
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from embpipe.llm.model_store import require_model, spec_for

PASSED_PARAMS = ("temperature", "max_tokens", "seed", "response_format", "logprobs", "top_logprobs", "stop")


@dataclass
class LocalRuntime:
    """Loaded llama models by name, with the thread count used for generation and prompt processing."""

    n_threads: int = 1
    reset_each_call: bool = False
    models: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

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
        with self.lock:
            for llama in self.models.values():
                llama.close()
            self.models.clear()

    def chat(self, name: str, messages: list[dict], params: dict[str, Any]) -> dict:
        """An OpenAI-style chat completion dict from the local model."""
        with self.lock:
            llama = self.model(name)
            if self.reset_each_call:
                llama.reset()
            return llama.create_chat_completion(messages=messages, **params)


def request_params(optional_params: dict[str, Any]) -> dict[str, Any]:
    """The request parameters llama-cpp-python understands, taken from litellm's optional params."""
    params = {k: optional_params[k] for k in PASSED_PARAMS if optional_params.get(k) is not None}
    if params.get("top_logprobs") and not params.get("logprobs"):
        params["logprobs"] = True
    return params


def model_name(model: str) -> str:
    """``local/qwen2.5-coder-1.5b`` or ``qwen2.5-coder-1.5b`` → ``qwen2.5-coder-1.5b``."""
    return model.split("/", 1)[1] if model.startswith("local/") else model


def _custom_llm_base():
    from litellm import CustomLLM

    return CustomLLM


class LocalLlamaProvider(_custom_llm_base()):
    """litellm handler for ``local/…`` model strings."""

    def __init__(self, runtime: LocalRuntime):
        super().__init__()
        self.runtime = runtime
        atexit.register(runtime.close)

    def completion(self, *args: Any, **kwargs: Any):
        from embpipe.llm.responses import model_response

        model = model_name(kwargs["model"])
        raw = self.runtime.chat(model, kwargs["messages"], request_params(kwargs.get("optional_params") or {}))
        choice = raw["choices"][0]
        usage = raw.get("usage") or {}
        return model_response(
            f"local/{model}",
            choice["message"].get("content") or "",
            usage.get("prompt_tokens", 0),
            usage.get("completion_tokens", 0),
            choice.get("logprobs"),
        )
