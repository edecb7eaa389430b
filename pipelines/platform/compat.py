"""Every use of a dependency's private API, in one place, each with why and what to re-check
when the dependency moves. Nothing else in the project imports a private module.

Re-check on each upgrade of dagster, feast or bentoml: `make test` covers each use below.
"""

import logging
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


def requested_backfills(instance) -> list:
    """Backfills the daemon has not finished submitting (their runs may not exist yet), so the
    landing sensor does not request their days again: `BulkActionStatus` is not exported.
    Re-check: dagster._core.execution.backfill.BulkActionStatus, PartitionBackfill.tags."""
    from dagster._core.execution.backfill import BulkActionStatus

    return list(instance.get_backfills(status=BulkActionStatus.REQUESTED))


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


def feast_redis_client(store: "FeatureStore") -> Any:
    """The Redis client Feast's Redis online store writes and reads through (its connection
    string, or the one `open_store` gives it): Feast has no public accessor. Re-check:
    RedisOnlineStore._get_client(config.online_store)."""
    return online_store_impl(store)._get_client(store.config.online_store)


def workspace_job_origin(workspace_yaml: str, location_name: str, job_name: str):
    """The origin a job of the workspace's code location carries when the UI launches it, so
    that a run started from the command line is the same job of the same location to the UI
    (its Re-execute, its job page, the Overview timeline): dagster has no public constructor.
    Re-check: dagster._core.workspace.load, dagster._core.remote_origin."""
    from dagster._core.definitions.repository_definition.valid_definitions import (
        SINGLETON_REPOSITORY_NAME,
    )
    from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin
    from dagster._core.workspace.load import location_origins_from_yaml_paths

    origins = {o.location_name: o for o in location_origins_from_yaml_paths([workspace_yaml])}
    if location_name not in origins:
        raise ValueError(f"{workspace_yaml} has no code location {location_name!r}")
    repository = RemoteRepositoryOrigin(origins[location_name], SINGLETON_REPOSITORY_NAME)
    return RemoteJobOrigin(repository, job_name)


def code_location_job(module: str, attribute: str, working_directory: str, job_name: str):
    """A job of the code location as a reconstructable pointer to the module's definitions
    (not to a copy built in this process), as the run launcher's worker loads it.
    Re-check: dagster._core.definitions.reconstruct."""
    from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository

    # Dagster keeps the last definition loaded through an equal pointer (lru_cache on the
    # class): drop it, so that each run loads the definitions as the environment now says
    # (resources follow FLIGHTLINE_DATA_ROOT when the definitions are built).
    ReconstructableJob.get_definition.cache_clear()
    ReconstructableJob.get_repository_definition.cache_clear()
    repository = ReconstructableRepository.for_module(module, attribute, working_directory)
    return repository.get_reconstructable_job(job_name)


def in_memory_job(job_def):
    """A job built in this process (tests that merge a second task into the definitions).
    Re-check: dagster._core.definitions.job_base."""
    from dagster._core.definitions.job_base import InMemoryJob

    return InMemoryJob(job_def)


def execute_run_events(job, run, instance):
    """Execute a created run in this process, yielding its events as they happen (progress
    lines); `dg.execute_job` creates its own run without the workspace origin and returns only
    at the end. Re-check: dagster._core.execution.api.execute_run_iterator."""
    from dagster._core.execution.api import execute_run_iterator

    return execute_run_iterator(job, run, instance)


def check_targets(instance, asset_key, partitions: list[str]) -> dict:
    """The latest materialization of each partition, which a check evaluation of that partition
    refers to (as Dagster records it for a single-partition run's check result), in one query:
    the type has no public constructor.
    Re-check: dagster._core.definitions.asset_checks.asset_check_evaluation."""
    import dagster as dg
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluationTargetMaterializationData,
    )

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=list(partitions)),
        limit=4 * len(partitions) + 10,  # newest first: the first seen of each partition
    ).records
    targets = {}
    for record in records:
        targets.setdefault(
            record.partition_key,
            AssetCheckEvaluationTargetMaterializationData(
                storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
            ),
        )
    return targets


def silence_mlflow_event_lines() -> None:
    """MLflow prints "Successfully registered model ...", "Registered model ... already exists"
    and "Created version ..." through its own stream (`eprint`), not through logging or
    warnings, so neither MLFLOW_LOGGING_LEVEL nor a warnings filter reaches them; the run's
    progress lines already say the same. `disable_logging()` does not hold (model logging turns
    the stream back on), so those lines alone are dropped at the stream's `write`; anything else
    MLflow prints (its errors) still passes. Re-check: mlflow.utils.logging_utils
    (MLFLOW_LOGGING_STREAM, eprint) and the messages in mlflow.tracking._model_registry.fluent."""
    import re

    from mlflow.utils import logging_utils

    stream = logging_utils.MLFLOW_LOGGING_STREAM
    if getattr(stream, "_flightline_quiet", False):
        return
    registration = re.compile(
        r"^(Successfully registered model |Registered model .* already exists|Created version )"
    )
    write = stream.write
    dropped = {"last": False}

    def quiet_write(text: str):
        if registration.match(text) or (dropped["last"] and text == "\n"):
            dropped["last"] = not dropped["last"] or text != "\n"
            return None
        dropped["last"] = False
        return write(text)

    stream.write = quiet_write
    stream._flightline_quiet = True


def harden_http_server(header_timeout_s: float, max_connections: int, error_body) -> None:
    """uvicorn's httptools protocol (the one `bentoml serve` runs; BentoML passes no option for
    these) with what it lacks: request headers must arrive within `header_timeout_s` of the
    connection or of a kept-alive request's first byte (else a 408 and the connection closed:
    1,000 connections trickling headers were held forever); at most `max_connections` open
    (a 503 to the next one, closed); its own 400 for a malformed request in the service's error
    shape. `error_body(loc, msg, type)` writes an answer's body.
    Re-check on each uvicorn upgrade: HttpToolsProtocol's connection_made, connection_lost,
    on_message_begin, on_headers_complete, send_400_response, `connections`, `loop`."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    # The last call's limits hold for every connection from then on.
    HttpToolsProtocol._flightline_limits = (header_timeout_s, max_connections, error_body)
    if getattr(HttpToolsProtocol, "_flightline_hardened", False):
        return
    made, lost = HttpToolsProtocol.connection_made, HttpToolsProtocol.connection_lost
    begin, complete = HttpToolsProtocol.on_message_begin, HttpToolsProtocol.on_headers_complete
    reasons = {400: b"Bad Request", 408: b"Request Timeout", 503: b"Service Unavailable"}

    def answer(self, status: int, body: bytes) -> None:
        if self.transport.is_closing():
            return
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n" % (status, reasons[status])
        head += b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        self.transport.write(head + body)
        self.transport.close()

    def disarm(self) -> None:
        timer = getattr(self, "_flightline_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._flightline_header_timer = None

    def arm(self) -> None:
        if getattr(self, "_flightline_header_timer", None) is None:
            seconds = self._flightline_limits[0]
            self._flightline_header_timer = self.loop.call_later(seconds, expire, self)

    def expire(self) -> None:
        self._flightline_header_timer = None
        seconds, _, error_body = self._flightline_limits
        message = f"request headers not received within {seconds:g} s"
        answer(self, 408, error_body(["header"], message, "timeout"))
        logging.getLogger("flightline.serving").info("refused 408: %s", message)

    def connection_made(self, transport) -> None:
        made(self, transport)
        _, most, error_body = self._flightline_limits
        if len(self.connections) > most:
            message = f"more than {most} connections open; retry later"
            answer(self, 503, error_body(["server"], message, "too_many_connections"))
            logging.getLogger("flightline.serving").info("refused 503: %s", message)
            return
        arm(self)

    def connection_lost(self, exc) -> None:
        disarm(self)
        lost(self, exc)

    def on_message_begin(self) -> None:
        begin(self)
        arm(self)

    def on_headers_complete(self) -> None:
        disarm(self)
        complete(self)

    def send_400_response(self, msg: str) -> None:
        answer(self, 400, self._flightline_limits[2](["request"], msg, "invalid_http"))
        logging.getLogger("flightline.serving").info("refused 400: %s", msg)

    HttpToolsProtocol.connection_made = connection_made
    HttpToolsProtocol.connection_lost = connection_lost
    HttpToolsProtocol.on_message_begin = on_message_begin
    HttpToolsProtocol.on_headers_complete = on_headers_complete
    HttpToolsProtocol.send_400_response = send_400_response
    HttpToolsProtocol._flightline_hardened = True


def instance_kv(instance) -> tuple:
    """The instance's small key-value table (what the daemons keep their cursors in), as
    (get, set): the alert ledger lives there so that it survives restarts and is shared by every
    process of the instance (SQLite or PostgreSQL), with no table of our own. Dagster exposes it
    on the run storage only. Re-check: dagster._core.storage.daemon_cursor.DaemonCursorStorage."""
    storage = instance.run_storage

    def get(key: str) -> str | None:
        return storage.get_cursor_values({key}).get(key)

    def set_(key: str, value: str) -> None:
        storage.set_cursor_values({key: value})

    return get, set_


def check_evaluations(instance, check_key, limit: int = 1000) -> list:
    """Every evaluation of an asset check, oldest first (the alert sensor reads what failed since
    its cursor, the live-operation audit the last word per day): the instance's public API gives
    only the latest one. Re-check: event_log_storage.get_asset_check_execution_history and its
    records' `.event.dagster_event.event_specific_data`."""
    records = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=limit)
    return [
        (record.id, record.run_id, record.event.dagster_event.event_specific_data)
        for record in sorted(records, key=lambda r: r.id)
        if record.event is not None and record.event.dagster_event is not None
    ]


def dagster_sqlite_event_log():
    """Dagster's SQLite event log class, the index shard's name and its busy timeout, for the
    embedded profile's event log (sqlite_event_log.py), which subclasses it and overrides its
    `_connect`: dagster 1.13 exports none of them, and `_connect` is the one place the storage
    opens a database. Re-check: dagster._core.storage.event_log.sqlite.sqlite_event_log
    (`_connect`, `_initdb`, `_initialized_dbs`, `_db_lock`, the watchdog's file pattern)."""
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
        INDEX_SHARD_NAME,
        SQLITE_BUSY_TIMEOUT_SECONDS,
        SqliteEventLogStorage,
    )

    return SqliteEventLogStorage, INDEX_SHARD_NAME, SQLITE_BUSY_TIMEOUT_SECONDS
