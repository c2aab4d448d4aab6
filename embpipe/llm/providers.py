"""The litellm custom provider ``fake/<name>`` (deterministic, for tests).

It is registered in ``litellm.custom_provider_map`` so it goes through the same routing, parameters and
response objects as any hosted model. ``local/<name>`` needs no provider: the teacher sends it to the local
teacher server (``local_endpoint``) through litellm's OpenAI-compatible client. ``register_providers`` is
idempotent.
"""

from __future__ import annotations

import threading

from embpipe.llm.fake_provider import FakeTeacherProvider

_lock = threading.Lock()
FAKE_PROVIDER = FakeTeacherProvider()


def register_providers() -> None:
    """Make ``fake/…`` model strings routable by litellm."""
    import litellm

    litellm.suppress_debug_info = True  # no "Provider List" banner on every mapped exception
    with _lock:
        providers = {entry["provider"] for entry in litellm.custom_provider_map}
        if "fake" not in providers:
            litellm.custom_provider_map.append({"provider": "fake", "custom_handler": FAKE_PROVIDER})
        from litellm.utils import custom_llm_setup

        custom_llm_setup()
