"""litellm custom providers: ``local/<name>`` (a GGUF run in process) and ``fake/<name>`` (deterministic).

Both are registered in ``litellm.custom_provider_map`` so they go through the same routing, parameters
and response objects as any hosted model. ``register_providers`` is idempotent.
"""

from __future__ import annotations

import threading

from embpipe.llm.fake_provider import FakeTeacherProvider
from embpipe.llm.local_provider import LocalLlamaProvider, LocalRuntime

_lock = threading.Lock()
LOCAL_PROVIDER = LocalLlamaProvider(LocalRuntime())
FAKE_PROVIDER = FakeTeacherProvider()


def register_providers(local_threads: int | None = None, local_reset_each_call: bool | None = None) -> None:
    """Make ``local/…`` and ``fake/…`` model strings routable by litellm (and set the local runtime)."""
    import litellm

    with _lock:
        if local_threads:
            LOCAL_PROVIDER.runtime.n_threads = local_threads
        if local_reset_each_call is not None:
            LOCAL_PROVIDER.runtime.reset_each_call = local_reset_each_call
        providers = {entry["provider"] for entry in litellm.custom_provider_map}
        if "local" not in providers:
            litellm.custom_provider_map.append({"provider": "local", "custom_handler": LOCAL_PROVIDER})
        if "fake" not in providers:
            litellm.custom_provider_map.append({"provider": "fake", "custom_handler": FAKE_PROVIDER})
        from litellm.utils import custom_llm_setup

        custom_llm_setup()
