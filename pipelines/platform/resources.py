"""Typed resources. Their defaults are the embedded profile; every field is set by configuration."""

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import dagster as dg
from pydantic import Field, PrivateAttr

from pipelines.platform.lib.feature_store import FeastLocation, open_store
from pipelines.platform.lib.lake import PARTITION_COLUMN, Lake
from pipelines.platform.lib.landing import LandedDay, archive_landed_file, read_landed_day
from pipelines.platform.lib.object_store import store_for
from pipelines.platform.lib.retrain_policy import Thresholds
from pipelines.platform.lib.services import check_uri
from pipelines.platform.lib.tracking import ModelRegistry
from pipelines.platform.metadata import add_run_metadata, column_schema, table_metadata

# Feast is imported when a step opens the store (FeastResource.store), not when the code location
# loads: it costs seconds in every process, step pods included. pandas: by the lake's methods.
if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore


# Up to a month, a ranged run lists each day's row count. Dagster copies a ranged run's metadata
# into every partition's materialization: a year's list would be stored 364 times per asset.
ROWS_LISTED_UP_TO_DAYS = 31


def ranged_row_counts(rows: dict[str, int]) -> dict:
    """A ranged run's row counts: the total, and each day's count (a month or less) or the
    spread of the days' counts and the five smallest days (longer ranges)."""
    counts = sorted(rows.values())
    meta: dict = {"rows_in_run": sum(counts)}
    if len(rows) <= ROWS_LISTED_UP_TO_DAYS:
        return meta | {"rows_by_day": dg.MetadataValue.json(rows)}
    smallest = sorted(rows.items(), key=lambda kv: (kv[1], kv[0]))[:5]
    return meta | {
        "days": len(rows),
        "rows_per_day": dg.MetadataValue.json(
            {"min": counts[0], "median": counts[len(counts) // 2], "max": counts[-1]}
        ),
        "smallest_days": dg.MetadataValue.json(dict(smallest)),
    }


class LakeIOManager(dg.ConfigurableIOManager):
    """Stores each asset as Parquet under the lake root, one file per partition (day).

    A ranged run hands over one frame for many days; it is split on its `partition_date` column.
    Inputs may set `allow_missing_partitions` in their metadata to read what exists of a window.
    A dict (a model reference, an evaluation report) is stored as a JSON document instead.
    """

    lake_root: str

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        check_lake(self.lake_root)

    @property
    def lake(self) -> Lake:
        return Lake(self.lake_root)

    def _table(self, context: dg.OutputContext | dg.InputContext) -> str:
        return "/".join(context.asset_key.path)

    def handle_output(self, context: dg.OutputContext, obj: "pd.DataFrame") -> None:
        if obj is None:
            return
        table = self._table(context)
        if isinstance(obj, dict):
            context.add_output_metadata({"path": self.lake.write_json(table, obj)})
            return
        if context.has_asset_partitions:
            keys = list(context.asset_partition_keys)
            if PARTITION_COLUMN not in obj.columns:
                raise ValueError(
                    f"{table}: a partitioned frame needs a {PARTITION_COLUMN!r} column"
                )
            stray = set(obj[PARTITION_COLUMN].unique()) - set(keys)
            if stray:
                raise ValueError(f"{table}: rows for days outside this run: {sorted(stray)[:5]}")
            rows = self.lake.write_partitions(table, obj, keys)
            # Metadata of a ranged run is shared by all its partitions: a per-partition row count
            # would be wrong there, so ranges record the total and the days' counts.
            counts = {"dagster/row_count": len(obj)} if len(keys) == 1 else ranged_row_counts(rows)
            context.add_output_metadata(counts)
            add_run_metadata(
                context,
                {"dagster/column_schema": column_schema(obj), "path": self.lake.glob(table)},
            )
        else:
            path = self.lake.write(table, obj)
            context.add_output_metadata({**table_metadata(obj), "path": path})

    def load_input(self, context: dg.InputContext) -> "pd.DataFrame":
        table = self._table(context)
        if context.has_asset_partitions:
            allow_missing = bool(
                (context.definition_metadata or {}).get("allow_missing_partitions")
            )
            return self.lake.read_partitions(
                table, context.asset_partition_keys, allow_missing=allow_missing
            )
        if self.lake.has_json(table):
            return self.lake.read_json(table)
        return self.lake.read(table)


class LakeResource(dg.ConfigurableResource):
    """Read-only access to the lake for what is not an asset input (e.g. footers for row counts)."""

    lake_root: str

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        check_lake(self.lake_root)

    @property
    def lake(self) -> Lake:
        return Lake(self.lake_root)


def check_lake(root: str) -> None:
    """An object-store lake that cannot be reached fails the step at start, naming the endpoint."""
    store = store_for(root)
    if store is not None:
        store.check()


class LandingZone(dg.ConfigurableResource):
    """Where day files arrive, and the archive that keeps every version that landed: folders, or
    s3:// prefixes in the object store (production)."""

    landing_dir: str
    archive_dir: str

    def read_day(self, table: str, day: str) -> LandedDay:
        return read_landed_day(self.landing_dir, table, day)

    def archive(self, landed: LandedDay) -> str:
        return str(archive_landed_file(landed, self.archive_dir))


class FeastResource(dg.ConfigurableResource):
    """The Feast feature store: DuckDB offline store over the lake; a local registry and SQLite
    online store (embedded), or a SQL registry on PostgreSQL and Redis online (production)."""

    project: str = "flightline"
    registry_path: str  # a file, or postgresql+psycopg2://... for Feast's SQL registry
    online_store_path: str
    lake_root: str
    repo_path: str
    redis_url: str | None = None  # redis://host:port/db: Redis instead of the SQLite file

    # Typed Any: pydantic resolves this annotation at class creation, which would import Feast.
    _store: Any = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # A wrong password or a server that is down fails the run at start, naming the URL.
        check_uri(self.registry_path if self.location.sql_registry else None)
        check_uri(self.redis_url)

    @property
    def location(self) -> FeastLocation:
        return FeastLocation(
            self.project,
            self.registry_path,
            self.online_store_path,
            self.lake_root,
            self.repo_path,
            self.redis_url,
        )

    def store(self) -> "FeatureStore":
        if self._store is None:
            self._store = open_store(self.location)
        return self._store


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking and registry. Embedded default: a SQLite store and an artifact folder under
    the data root; production: a tracking server URL (and object-store artifacts)."""

    tracking_uri: str
    artifact_root: str
    registry_uri: str | None = None
    # Where people open the MLflow UI (`make mlflow` serves it on MLFLOW_PORT); links and inline
    # pictures in asset metadata point there. Set FLIGHTLINE_MLFLOW_UI_URL for a remote UI.
    ui_url: str = "http://127.0.0.1:5000"

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        check_uri(self.tracking_uri)
        check_uri(self.registry_uri)

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.tracking_uri, self.artifact_root, self.registry_uri)

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

    def model_version_url(self, name: str, version: str) -> str:
        return f"{self.ui_url.rstrip('/')}/#/models/{name}/versions/{version}"

    def artifact_url(self, run_id: str, path: str) -> str:
        """A run's artifact file as the MLflow UI serves it (an <img> shows a PNG inline; a
        browser downloads other files)."""
        return f"{self.ui_url.rstrip('/')}/get-artifact?path={quote(path)}&run_uuid={run_id}"

    def artifact_page_url(self, experiment_id: str, run_id: str, path: str) -> str:
        """The run's artifact viewer on one file: the MLflow UI renders an HTML report there."""
        return f"{self.run_url(experiment_id, run_id)}/artifactPath/{quote(path)}"


class BentoResource(dg.ConfigurableResource):
    """BentoML's model and Bento store, and where the packaging asset says which Bento is live."""

    home: str
    serving_dir: str  # <serving_dir>/<task>/latest.json: the Bento each task built last

    def latest_pointer(self, task: str) -> Path:
        return Path(self.serving_dir) / task / "latest.json"

    def check_home(self) -> None:
        from pipelines.platform.compat import bentoml_home

        active = bentoml_home()
        if Path(active).resolve() != Path(self.home).resolve():
            raise RuntimeError(
                f"BentoML's store is {active} but the platform is configured for {self.home}: "
                "export BENTOML_HOME before starting (the Makefile does)"
            )


class RetrainPolicy(dg.ConfigurableResource):
    """When the drift sensor launches a retrain (see pipelines/lib/retrain_policy.py)."""

    drift_share: float = 0.5
    prediction_drift: bool = True
    max_live_auc_drop: float = 0.05
    cooldown_days: int = 7

    def thresholds(self) -> Thresholds:
        return Thresholds(
            self.drift_share, self.prediction_drift, self.max_live_auc_drop, self.cooldown_days
        )


class ServiceDeploymentResource(dg.ConfigurableResource):
    """Where each task's service runs on Kubernetes (production): the namespace of its
    Deployment (`<task>-service`), and a kubeconfig, or none for the pod's service account.
    Unset namespace (the embedded profile): there is no cluster, the deployment asset says so."""

    namespace: str | None = None
    kubeconfig: str | None = None
    rollout_timeout_s: int = 600

    def target(self, task: str):
        from pipelines.platform.lib.deployment import ServiceDeployment, deployment_name

        assert self.namespace, "no Kubernetes namespace configured"
        return ServiceDeployment(self.namespace, deployment_name(task), self.kubeconfig)


class AlertSinks(dg.ConfigurableResource):
    """Where alerts go: a Slack-compatible incoming webhook and/or an SMTP relay (both optional;
    with neither, the alert sensors record incidents and skip with "no sinks configured"), and
    the rate limit per alert sensor. See docs/rollout-and-alerts.md."""

    webhook_url: str = ""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_sender: str = "flightline@localhost"
    smtp_recipients: list[str] = Field(default_factory=list)
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    rate_limit_count: int = 20
    rate_limit_window_s: float = 600.0

    def sinks(self) -> list:
        from pipelines.platform.lib.alerts import EmailSink, WebhookSink

        out: list = []
        if self.webhook_url:
            out.append(WebhookSink(self.webhook_url))
        if self.smtp_host:
            if not self.smtp_recipients:
                raise ValueError("smtp_host is set but smtp_recipients is empty")
            out.append(
                EmailSink(
                    self.smtp_host,
                    self.smtp_port,
                    self.smtp_sender,
                    tuple(self.smtp_recipients),
                    self.smtp_username,
                    self.smtp_password,
                    self.smtp_starttls,
                )
            )
        return out

    def rate_limit(self):
        from pipelines.platform.lib.alerts import RateLimit

        return RateLimit(self.rate_limit_count, self.rate_limit_window_s)
