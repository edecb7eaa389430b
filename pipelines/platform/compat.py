"""Every use of a dependency's private API, in one place, each with why and what to re-check
when the dependency moves. Nothing else in the project imports a private module.

Re-check on each upgrade of dagster, feast or bentoml: `make test` covers each use below.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feast import FeatureStore


def backfill_subset(keys, partitions, graph):
    """The asset-partition subset a sensor's backfill RunRequest takes
    (`RunRequest.for_asset_graph_subset`): dagster 1.13 has no public constructor for it.
    Re-check: dagster._core.definitions.assets.graph.asset_graph_subset, ...events."""
    from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
    from dagster._core.definitions.events import AssetKeyPartitionKey

    return AssetGraphSubset.from_asset_partition_set(
        {AssetKeyPartitionKey(k, p) for k in keys for p in partitions}, graph
    )


def check_execution_statuses():
    """The status enum of asset-check execution records, which the instance's public
    `event_log_storage.get_asset_check_execution_history` returns but does not export.
    Re-check: dagster._core.storage.asset_check_execution_record."""
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus,
    )

    return AssetCheckExecutionRecordStatus


def check_step_health_result():
    """What a k8s step handler's `check_step_health` returns (to add the pod's reason to a
    failed step). Re-check: dagster._core.executor.step_delegating."""
    from dagster._core.executor.step_delegating import CheckStepHealthResult

    return CheckStepHealthResult


def bentoml_home() -> str:
    """The store BentoML fixed at import (BENTOML_HOME), to refuse a mismatched one: no public
    accessor. Re-check: bentoml._internal.configuration.containers."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return str(BentoMLContainer.bentoml_home.get())


def online_store_impl(store: "FeatureStore") -> Any:
    """The online store object behind a FeatureStore (the one push and materialize write
    through): Feast exposes no accessor. Re-check: FeatureStore._get_provider().online_store."""
    return store._get_provider().online_store
