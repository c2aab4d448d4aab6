"""Materialize only what is stale, in process: the headless ``embpipe run``.

Dagster's staleness is one level deep (a child of a stale asset looks fresh until the stale one is rebuilt
and records a new data version), so the runner works in passes: each pass materializes the frontier of the
assets that are missing, stale, or whose stage config changed since their last materialization (those with
no such asset among their ancestors), until none is left. Building only the frontier matters: an asset built
in the same pass as an ancestor's ancestor would read an input that is about to change (a report built on
new questions but old splits).
Assets below one whose latest blocking check failed are held back: Dagster's blocking checks stop only the
rest of the run that failed them, and the next run would find the blocked asset fresh and build on it (a
model worse than the base going on to export and serving). They wait until that asset is rebuilt and passes.
``documents`` is read in every first pass (cheap): its data version is the document manifest's hash, so
an unchanged folder leaves everything below it fresh, and a rerun with nothing changed pays nothing.
"""

import inspect
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dagster import AssetKey, AssetsDefinition, Config, ConfigurableResource, DagsterInstance, materialize
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._time import get_current_datetime

from embpipe.llm.budget import BUDGET_SCOPE_TAG
from embpipe.orchestration.check_gates import failed_check_messages, rebuild_after_failed_checks, step_errors
from embpipe.orchestration.fingerprints import BUDGET_STOP, CONFIG_FINGERPRINT, TOKEN_BUDGET, config_fingerprint

logger = logging.getLogger(__name__)
ALWAYS_READ = AssetKey("documents")


@dataclass
class PassSummary:
    """One materialization pass: its Dagster run id and the assets it built."""

    run_id: str
    assets: list[str]


@dataclass
class RunOutcome:
    """Every pass of a headless run."""

    passes: list[PassSummary] = field(default_factory=list)
    failed: bool = False
    held_back: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    owed: list[str] = field(default_factory=list)  # assets with items the next run asks the teacher again

    @property
    def run_ids(self) -> list[str]:
        return [p.run_id for p in self.passes]

    @property
    def rebuilt(self) -> list[str]:
        return [a for p in self.passes for a in p.assets]


def stale_resolver(instance: DagsterInstance, assets: Sequence[AssetsDefinition]) -> CachingStaleStatusResolver:
    """Dagster's stale-status resolver over ``assets`` (the private API is confined to this function)."""
    graph = AssetGraph.from_assets(assets)
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    return CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)


def config_class(asset: AssetsDefinition) -> type[Config] | None:
    """The Pythonic ``Config`` class an asset's function takes, if any."""
    for parameter in inspect.signature(asset.op.compute_fn.decorated_fn).parameters.values():
        annotation = parameter.annotation
        if (
            inspect.isclass(annotation)
            and issubclass(annotation, Config)
            and not issubclass(annotation, ConfigurableResource)
        ):
            return annotation
    return None


def op_config(run_config: dict, op_name: str) -> dict:
    return run_config.get("ops", {}).get(op_name, {}).get("config", {})


def recorded_metadata(instance: DagsterInstance, key: AssetKey) -> dict:
    """The metadata of the asset's latest materialization (empty when it was never built)."""
    event = instance.get_latest_materialization_event(key)
    return event.asset_materialization.metadata if event and event.asset_materialization else {}


def config_changed(instance: DagsterInstance, asset: AssetsDefinition, run_config: dict) -> bool:
    """Whether the asset's resolved config differs from the one its latest materialization recorded."""
    cls = config_class(asset)
    if cls is None:
        return False
    expected = config_fingerprint(cls(**op_config(run_config, asset.op.name)))
    for key in asset.keys:
        metadata = recorded_metadata(instance, key)
        if CONFIG_FINGERPRINT in metadata:
            return metadata[CONFIG_FINGERPRINT].value != expected
    return False


def switches_changed(instance: DagsterInstance, asset: AssetsDefinition, resources: dict) -> bool:
    """Whether a method switch (every field of ``methods``: ``lmar``, ``embgen``, ``mining``) differs from the one the
    asset recorded.

    Dagster does not mark an asset stale when a resource changes, so an LMAR stage built with LMAR off would
    stay an empty table after LMAR is switched on; the stages record their switch and the runner compares it.
    """
    methods = resources.get("methods")
    if methods is None or "methods" not in asset.required_resource_keys:
        return False
    for key in asset.keys:
        metadata = recorded_metadata(instance, key)
        for switch in type(methods).model_fields:
            if switch in metadata and metadata[switch].value != getattr(methods, switch):
                return True
    return False


def budget_raised(instance: DagsterInstance, asset: AssetsDefinition, resources: dict) -> bool:
    """Whether a teacher stage that the token budget stopped last time now runs under a larger budget (Dagster
    keeps it fresh: the budget is a resource); rebuilt, it gets its earlier calls from the teacher cache."""
    teacher = resources.get("teacher")
    if teacher is None or "teacher" not in asset.required_resource_keys:
        return False
    budget = teacher.token_budget or 0  # 0: no cap
    for key in asset.keys:
        metadata = recorded_metadata(instance, key)
        stop, recorded = metadata.get(BUDGET_STOP), metadata.get(TOKEN_BUDGET)
        stopped = stop is not None and stop.value != "none"
        if stopped and recorded is not None and recorded.value and (budget == 0 or budget > recorded.value):
            return True
    return False


def stored_output_lost(path: Path) -> bool:
    """Whether a stored output is gone or unreadable: a missing file or folder, an empty model folder, a
    Parquet file whose footer does not read (truncated, overwritten)."""
    if not path.exists():
        return True
    if path.is_dir():
        return not any(path.iterdir())
    if path.suffix == ".parquet":
        import pyarrow
        import pyarrow.parquet

        try:
            pyarrow.parquet.read_metadata(path)
        except (OSError, pyarrow.ArrowException):
            return True
    return False


def lost_outputs(instance: DagsterInstance, assets: Sequence[AssetsDefinition]) -> set[AssetKey]:
    """Keys whose latest materialization recorded a ``path`` that no longer holds a readable output."""
    lost = set()
    for asset in assets:
        for key in asset.keys if asset.is_materializable else ():
            event = instance.get_latest_materialization_event(key)
            metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
            if "path" in metadata and stored_output_lost(Path(str(metadata["path"].value))):
                logger.warning("%s: its stored output %s is missing or unreadable; rebuilding it",
                               key.to_user_string(), metadata["path"].value)  # fmt: skip
                lost.add(key)
    return lost


def keys_to_build(
    instance: DagsterInstance, assets: Sequence[AssetsDefinition], run_config: dict, resources: dict | None = None
) -> set[AssetKey]:
    """Asset keys that are missing, stale, configured (or switched) differently than when last built, stopped by
    a token budget that has since been raised, or whose stored output was deleted or damaged since."""
    resolver = stale_resolver(instance, assets)
    keys: set[AssetKey] = lost_outputs(instance, assets)
    for asset in assets:
        if not asset.is_materializable:
            continue
        if (
            config_changed(instance, asset, run_config)
            or switches_changed(instance, asset, resources or {})
            or budget_raised(instance, asset, resources or {})
        ):
            keys |= set(asset.keys)
        keys |= {k for k in asset.keys if resolver.get_status(k) in (StaleStatus.STALE, StaleStatus.MISSING)}
    return keys


def whole_assets(assets: Sequence[AssetsDefinition], keys: set[AssetKey]) -> set[AssetKey]:
    """``keys`` widened to every key of each asset definition they touch (multi-assets build together)."""
    return {k for a in assets if set(a.keys) & keys for k in a.keys}


def selected_run_config(run_config: dict, assets: Sequence[AssetsDefinition], keys: set[AssetKey]) -> dict:
    """The run config restricted to the ops that build ``keys`` (Dagster refuses config for other ops)."""
    ops = {a.op.name for a in assets if set(a.keys) & keys}
    return {**run_config, "ops": {op: cfg for op, cfg in run_config.get("ops", {}).items() if op in ops}}


def upstream_closure(assets: Sequence[AssetsDefinition], targets: set[AssetKey]) -> set[AssetKey]:
    """``targets`` and every asset they depend on, directly or not."""
    graph = AssetGraph.from_assets(assets)
    closure, pending = set(), list(targets)
    while pending:
        key = pending.pop()
        if key not in closure:
            closure.add(key)
            pending.extend(graph.get(key).parent_keys)
    return closure


def held_back_by_checks(instance: DagsterInstance, assets: Sequence[AssetsDefinition], checks: Sequence) -> dict:
    """Every asset below one whose latest blocking-check evaluation failed, with that check's name."""
    graph = AssetGraph.from_assets(assets)
    held: dict[AssetKey, str] = {}
    for spec in (s for c in checks for s in c.check_specs if s.blocking):
        record = instance.get_latest_asset_check_evaluation_record(spec.key)
        if record is None or record.status != AssetCheckExecutionRecordStatus.FAILED:
            continue
        pending = list(graph.get(spec.asset_key).child_keys)
        while pending:
            key = pending.pop()
            if key not in held:
                held[key] = spec.name
                pending.extend(graph.get(key).child_keys)
    return held


def frontier(assets: Sequence[AssetsDefinition], keys: set[AssetKey]) -> set[AssetKey]:
    """The ``keys`` none of whose ancestors is in ``keys``: what can be rebuilt now without rebuilding twice."""
    return {k for k in keys if not (upstream_closure(assets, {k}) - {k}) & keys}


def run_stale(
    assets: Sequence[AssetsDefinition],
    checks: Sequence,
    resources: dict,
    run_config: dict,
    instance: DagsterInstance,
    force: bool = False,
    on_pass: Callable[[int, list[str]], None] | None = None,
    targets: set[AssetKey] | None = None,
    tags: dict[str, str] | None = None,
    raise_on_error: bool = True,
) -> RunOutcome:
    """Materialize passes until nothing is stale (``force`` rebuilds everything once first).

    With ``targets``, only those assets and their upstream are considered; ``tags`` go on every pass's run,
    with one ``BUDGET_SCOPE_TAG`` so the teacher's token budget covers all the passes together.
    A failed pass raises, or with ``raise_on_error=False`` ends the loop with ``outcome.failed`` set. Assets
    below a failed blocking check are left unbuilt and listed in ``outcome.held_back`` (asset: check).
    """
    outcome = RunOutcome()
    tags = {BUDGET_SCOPE_TAG: f"embpipe-run-{uuid.uuid4().hex}", **(tags or {})}  # one token budget, all passes
    every_key = {k for a in assets if a.is_materializable for k in a.keys}
    if targets:
        every_key &= upstream_closure(assets, targets)

    owed = rebuild_after_failed_checks(instance, checks) if not force else set()  # each asked again once
    stale = keys_to_build(instance, assets, run_config, resources) | owed if not force else set()
    selection = every_key if force else (stale | {ALWAYS_READ}) & every_key
    for number in range(1, 2 * len(every_key) + 2):
        held = held_back_by_checks(instance, assets, checks)
        outcome.held_back = {k.to_user_string(): v for k, v in held.items() if k in every_key}
        selection = selection - set(held)
        if not selection:
            break
        selection = whole_assets(assets, selection if force and number == 1 else frontier(assets, selection))
        names = sorted(k.to_user_string() for k in selection)
        if on_pass:
            on_pass(number, names)
        result = materialize(
            [*assets, *checks],
            selection=list(selection),
            resources=resources,
            instance=instance,
            run_config=selected_run_config(run_config, assets, selection),
            tags=tags,
            raise_on_error=raise_on_error,
        )
        outcome.passes.append(PassSummary(result.run_id, names))
        if not result.success:
            outcome.failed, outcome.errors = True, failed_check_messages(result) + step_errors(result)
            break
        owed -= selection  # asked again once: what is still owed after that waits for the next run
        selection = (keys_to_build(instance, assets, run_config, resources) | owed) & every_key
    outcome.owed = sorted(k.to_user_string() for k in rebuild_after_failed_checks(instance, checks) & every_key)
    return outcome
