"""The teacher resource: one place for how the LLM teacher is reached, cached and limited.

Point ``model`` at any litellm model string: ``local/qwen2.5-coder-1.5b`` (default, offline),
``openai/gpt-4o-mini``, ``ollama/qwen2.5:7b`` with ``api_base``, ``hosted_vllm/<model>`` with ``api_base``.
The API key arrives through ``EnvVar`` (for example ``EnvVar("OPENAI_API_KEY")``) and is only handed to
litellm; it is never part of a cache key, a ledger row, a log line or metadata.
"""

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from embpipe.llm.budget import BUDGET_SCOPE_TAG, DEFAULT_RUN_TOKEN_BUDGET
from embpipe.llm.local_endpoint import LOCAL_PARALLEL
from embpipe.llm.teacher import Teacher, TeacherSettings
from embpipe.llm.teacher_store import TeacherStore
from embpipe.paths import data_dir


class TeacherResource(ConfigurableResource):
    """The LLM teacher behind every synthesis stage (litellm; cached, budgeted, counted)."""

    model: str = Field(default="local/qwen2.5-coder-1.5b", description="litellm model string.")
    api_base: str | None = Field(default=None, description="Endpoint for served models (Ollama, vLLM, proxies).")
    api_key: str | None = Field(default=None, description="API key; pass EnvVar('…'), never a literal.")
    temperature: float = Field(default=0.0, description="Sampling temperature of first attempts.")
    max_retries: int = Field(default=3, description="Retries for transient errors and for unusable replies.")
    timeout_s: float = Field(default=300.0, description="Timeout of one call.")
    token_budget: int | None = Field(
        default=DEFAULT_RUN_TOKEN_BUDGET,
        description="Most prompt+completion tokens (cached or paid) one run may use, over all its passes; split "
        "into per-stage shares (embpipe.llm.budget.STAGE_SHARES); calls stop before it. None: no cap.",
    )
    local_threads: int = Field(default=2, description="CPU threads of the local teacher server.")
    local_reset_each_call: bool = Field(
        default=False, description="Recompute every local prompt from scratch (slower; no prompt-prefix reuse)."
    )
    local_parallel: int = Field(
        default=LOCAL_PARALLEL,
        description="Replies the local teacher decodes together (llama.cpp parallel sequences; 1: one at a time).",
    )
    local_idle_timeout_s: float = Field(
        default=600.0, description="The local teacher server exits after this long without a request."
    )
    context_tokens: int | None = Field(
        default=None,
        description="The teacher's context window in tokens; prompts are cut to fit it. None: the local model's "
        "window, else litellm's figure for the model, else unknown (prompts sent as they are).",
    )
    max_concurrency: int | None = Field(
        default=None,
        description="Teacher calls each stage keeps in flight (the tables' order does not depend on it). None: "
        "local_parallel for the local model, 1 for the test provider, 4 for a served model (vLLM, Ollama, an API).",
    )
    store_path: str = Field(
        default="", description="SQLite file of the response cache, ledger and failures; empty = <data dir>/teacher."
    )
    _run_id: str = PrivateAttr(default="adhoc")
    _budget_scope: str = PrivateAttr(default="")

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._run_id = context.run_id or "adhoc"
        tags = context.dagster_run.tags if context.dagster_run else {}
        self._budget_scope = tags.get(BUDGET_SCOPE_TAG, "")

    def settings(self, idle_stages: frozenset[str] = frozenset()) -> TeacherSettings:
        """The plain settings the teacher is built from; ``idle_stages`` are switched off (their budget shares
        go to the question stage)."""
        return TeacherSettings(
            model=self.model,
            api_base=self.api_base,
            api_key=self.api_key,
            temperature=self.temperature,
            max_retries=self.max_retries,
            timeout_s=self.timeout_s,
            token_budget=self.token_budget,
            budget_scope=self._budget_scope,
            idle_stages=idle_stages,
            local_threads=self.local_threads,
            local_reset_each_call=self.local_reset_each_call,
            local_parallel=self.local_parallel,
            local_idle_timeout_s=self.local_idle_timeout_s,
            context_tokens=self.context_tokens,
            max_concurrency=self.max_concurrency,
        )

    def store(self) -> TeacherStore:
        """The cache, ledger and failure record."""
        return TeacherStore(self.store_path or data_dir() / "teacher" / "teacher.sqlite")

    def client(self, idle_stages: frozenset[str] = frozenset()) -> Teacher:
        """A teacher bound to this run's ledger and budget; a missing local model fails here, naming the fix."""
        from embpipe.llm.local_runtime import model_name
        from embpipe.llm.model_weights import require_model

        if self.model.startswith("local/"):
            require_model(model_name(self.model))
        return Teacher(self.settings(idle_stages), self.store(), run_id=self._run_id)
