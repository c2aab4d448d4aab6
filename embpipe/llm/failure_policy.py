"""One failure policy at the litellm boundary: which errors fail one item (retried first, or not), which stop a stage.

Transient errors (timeouts, 429s, 5xx, connection errors, replies that are not a completion) are retried with
backoff by ``Teacher`` only (the OpenAI SDK's own retries are switched off), then recorded for the item;
refusals of one request (a 400 such as "context length exceeded") are recorded at once; authentication,
permission and unknown-model errors would fail every item, so they stop the stage with the provider's message.
"""

from __future__ import annotations

from embpipe.llm.local_endpoint import TeacherCrashed


class MalformedReply(RuntimeError):
    """A successful HTTP reply without a usable completion (no choices): retried like a transient error."""


def transient_errors() -> tuple[type[BaseException], ...]:
    """Errors that fail one item, not the stage, after our retries with backoff: timeouts, rate limits,
    connection errors, 5xx, replies that are not a completion; and a crash of the local teacher process
    (recorded at once, not retried). Ours are the only retries: the OpenAI SDK's own are switched off."""
    import litellm

    return (
        TeacherCrashed,
        MalformedReply,
        litellm.Timeout,
        litellm.RateLimitError,
        litellm.APIConnectionError,
        litellm.ServiceUnavailableError,
        litellm.InternalServerError,
        litellm.BadGatewayError,
        litellm.APIResponseValidationError,
    )


def rate_limit_error() -> type[BaseException]:
    """A 429: retried after a pause that every worker of the teacher waits out."""
    import litellm

    return litellm.RateLimitError


def refused_item_errors() -> tuple[type[BaseException], ...]:
    """Errors the teacher gives for one request that a retry would only repeat (a 400: the context length
    exceeded, a content filter, a malformed request): recorded for that item at once; the stage goes on."""
    import litellm

    return (litellm.BadRequestError, litellm.UnprocessableEntityError)


def is_owed(error: BaseException) -> bool:
    """Whether an item that failed with ``error`` is owed: the teacher was unavailable (a transient error), not
    a refusal or a bad reply, so a later run asks it again."""
    return isinstance(error, transient_errors())


def item_errors() -> tuple[type[BaseException], ...]:
    """Every error that fails one item and lets the stage go on (``transient_errors`` + ``refused_item_errors``).

    Authentication, permission and unknown-model errors are not among them: they would fail every item, so
    they stop the stage with the provider's message.
    """
    return transient_errors() + refused_item_errors()


def failure_reason(error: BaseException, retries: int) -> str:
    """The recorded reason of an item that failed with ``error``."""
    name = type(error).__name__
    if isinstance(error, TeacherCrashed):
        return f"TeacherCrashed: {error}"
    if isinstance(error, refused_item_errors()):
        return f"the teacher refused this request ({name}, not retried): {error}"
    return f"teacher unavailable after {retries} retries: {name}: {error}"
