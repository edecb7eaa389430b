"""The task definition: the typed attributes of a task's `defs.yaml`, and the resolved `Task` the
stage factories build from. Data lives in the YAML; Python (source readers, feature functions,
Feast declarations, contracts) is referenced from it as `module:attribute`."""

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from typing import Any, Literal

import dagster as dg
from pydantic import ConfigDict, Field, field_validator, model_validator

from pipelines.platform.lib.task import (
    MODEL_FAMILIES,
    BaselineSpec,
    GateThresholds,
    TaskDomain,
    TaskSpec,
    TimeSplit,
)
from pipelines.platform.lib.validation import TableContract


class DefinitionError(ValueError):
    """A task definition that cannot be built; the message names the task and the field."""


def load_reference(ref: str, what: str) -> Any:
    """`package.module:attribute` -> the object, with an error naming the field."""
    module_name, _, attribute = ref.partition(":")
    if not module_name or not attribute:
        raise DefinitionError(f"{what}: {ref!r} is not a 'module:attribute' reference")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DefinitionError(f"{what}: cannot import {module_name!r}: {exc}") from exc
    try:
        return getattr(module, attribute)
    except AttributeError as exc:
        raise DefinitionError(f"{what}: {module_name} has no attribute {attribute!r}") from exc


class Strict(dg.Model, dg.Resolvable):
    # A misspelt field is an error at load time, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")


class PartitionsModel(Strict):
    grain: Literal["daily", "hourly"] = "daily"  # one partition per local day or hour
    start: str = Field(description="First partition (YYYY-MM-DD or YYYY-MM-DD-HH:MM)")
    end: str | None = Field(default=None, description="Exclusive end; open-ended if unset")
    # IANA zone of the partitions' days (and of the training split's days)
    timezone: str = "UTC"


class LandingTableModel(Strict):
    name: str  # landing/<task>/<name>/<partition>.csv|parquet; the raw asset is raw_<name>
    contract: str = Field(description="module:attribute of the table's TableContract")
    description: str = ""  # shown on the raw asset


@dataclass(frozen=True)
class TableInput:
    table: str
    window: int = 0  # also read this many partitions before the run's own (trailing windows)


class LiveModel(Strict):
    """How a feature view's values reach the online store between landings (issue 24):
    `events`: each row as it becomes known (a push source / event stream); `published`: rows
    published on a cadence (`every`), stamped on it; `static`: reference values that never change
    (TTL 0); `none`: no live path (the service reports the view unavailable, never a silent null)."""

    kind: Literal["events", "published", "static", "none"]  # how values reach the store live
    every: str | None = Field(
        default=None,
        description="Refresh cadence of a published view (pandas offset, e.g. 1D, 15min)",
    )
    note: str = ""  # why, for a view with no live path (required for kind none)

    @model_validator(mode="after")
    def _cadence(self) -> "LiveModel":
        if (self.kind == "published") != (self.every is not None):
            raise ValueError("live.every: required for kind published, and only for it")
        if self.kind == "none" and not self.note:
            raise ValueError("live.note: say why the view has no live path")
        return self


class FeatureTableModel(Strict):
    name: str  # the asset <task>/<name> and its lake table
    function: str = Field(description="module:function computing the table from its inputs")
    inputs: list[str] = Field(description="Tables passed to the function, in order")
    # Inputs read with a trailing window: table -> how many partitions before the run's own.
    windows: dict[str, int] = {}
    description: str = ""  # shown on the asset
    entity: str | None = Field(default=None, description="Entity column, for its metadata")
    feast_source: bool = Field(default=True, description="Read by a Feast feature view")
    live: LiveModel | None = Field(
        default=None, description="The view's live path (required for a Feast source)"
    )

    def table_inputs(self) -> list[TableInput]:
        return [TableInput(t, self.windows.get(t, 0)) for t in self.inputs]


class ExamplesModel(Strict):
    table: str = Field(description="The feature table with one row per example (and its label)")
    id_column: str  # identifies an example (the entity key of the training set)
    timestamp: str = Field(description="The example's time; the prediction is lead_minutes before")
    label: str  # the 0/1 label column; rows without a label are not examples
    # The column holding the instant each label became known: a training set cut at an instant
    # and live performance use only labels known by then (issue 24).
    label_known_at: str | None = None
    # The prediction is made this long before `timestamp` (0: at the timestamp itself).
    lead_minutes: int = 0


class FeaturesModel(Strict):
    feature_service: str  # the versioned Feast FeatureService training and serving both read
    categorical: list[str]  # categorical features (the rest are numeric)
    # Numeric features computed from the request itself (the rest come from the FeatureService).
    request_numeric: list[str] = []


class ServingModel(Strict):
    request_model: str = Field(description="module:attribute of the pydantic model of a request")
    request_name: str = Field(description="The request's field name in the /predict body")
    batch_name: str = Field(
        default="requests", description="The list's field name in the /predict_batch body"
    )
    score_field: str = "probability"  # the answer's field holding the score
    score_description: str = "P(label = 1)"  # its description in the OpenAPI spec
    # Answer fields that say a view knew nothing of the request's entity: field -> feature view.
    flags: dict[str, str] = {}
    max_batch: int = 1000  # the most requests one /predict_batch may hold
    # The request field whose value is the entity a canary assigns to one model (stable hash).
    canary_entity: str = ""
    # Requests larger than this are refused (413) before their body is parsed.
    max_body_bytes: int = 1_000_000
    # The serving window: a request whose `time_field` (the prediction time) is outside
    # [earliest, latest) is a 400 naming the field. ISO dates, days in the partitions' zone (so
    # an answered request's log day is inside it); empty: no bound.
    time_field: str = ""
    earliest: str = ""  # first day a request may be for (ISO date, UTC)
    latest: str = ""  # the day after the last a request may be for (ISO date, UTC)

    @field_validator("earliest", "latest")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        if value:
            date.fromisoformat(value)  # ValueError names the bad value
        return value


class BaselineModel(Strict):
    """A naive baseline: the historical label rate by keys, or one feature used as the score."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")  # shown as baseline_<name> in reports
    rate_by: list[str] = []  # the historical label rate by these features' values
    feature: str | None = None  # or: this feature's value as the score (a logistic fit on it)
    description: str = ""  # shown in the evaluation report

    @model_validator(mode="after")
    def _one_kind(self) -> "BaselineModel":
        if bool(self.rate_by) == (self.feature is not None):
            raise ValueError(f"baselines.{self.name}: give exactly one of rate_by or feature")
        return self


class RunWindowModel(Strict):
    """The days `flightline run|replay` cover when --start/--end are not given."""

    start: str  # first day (ISO date), in the task's zone
    end: str  # last day (ISO date), included

    @field_validator("start", "end")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        date.fromisoformat(value)  # ValueError names the bad value
        return value

    @model_validator(mode="after")
    def _ordered(self) -> "RunWindowModel":
        if self.start > self.end:
            raise ValueError("run_window.start: must not be after run_window.end")
        return self


class AutomationModel(Strict):
    retrain_cron: str = "0 2 * * *"  # the nightly retrain schedule (cron)
    timezone: str = "UTC"  # the schedule's zone
    # The expected landing cadence: no new landed partition for longer than this (wall clock)
    # raises a `landing_overdue` alert, which resolves when one lands. Unset: not watched.
    landing_cadence_minutes: int | None = Field(default=None, ge=1)


class DrillModel(Strict):
    """A disturbance the live-operation scenario (`make live`) applies to a landing table's
    column for a few days: value * multiply + add (a storm's delays, a curtailed turbine)."""

    table: str  # a landing table of the task
    column: str  # a numeric column of that table
    multiply: float = 1.0  # the value is multiplied by this
    add: float = 0.0  # then this is added


class MonitoringModel(Strict):
    """How much of a day is evidence: a task with few entities and an hourly grain serves fewer
    rows a day than flight delay (the Launchpad can still change these per run)."""

    drift_min_rows: int = Field(default=200, ge=1)  # fewer: "insufficient", never "no drift"
    # Fewer labelled rows in a day: live performance is "insufficient"
    live_min_labelled_rows: int = Field(default=100, ge=1)
    # The live skew check fails when a column differs from the point-in-time join in more than
    # this share of a day's live requests (0: any difference).
    live_skew_tolerance: float = Field(default=0.0, ge=0.0, le=1.0)
    drill: list[DrillModel] = Field(
        default=[], description="The drift episode of the live-operation scenario (`make live`)"
    )


class RolloutModel(Strict):
    """Staged rollout (docs/rollout-and-alerts.md). Off: a challenger that passes the offline
    gate becomes champion at once. On: it enters shadow (scored on every live request, the
    champion answers), then canary (`canary_share` of the entities `serving.canary_entity`
    names), then champion, each step on the live gate's verdict; or it is rolled back."""

    enabled: bool = False  # off: a challenger that passes the offline gate is champion at once
    # Labelled live requests (both classes) before the live gate decides a stage.
    min_labelled_rows: int = Field(default=300, ge=1)
    # While the AUC gain is inconclusive (its interval spans zero) the gate waits for more
    # evidence, up to this many labelled rows in the stage; then an unproven challenger rolls back.
    max_labelled_rows: int = Field(default=3000, ge=1)
    # The share of entities (serving.canary_entity) the challenger answers during canary.
    canary_share: float = Field(default=0.1, gt=0.0, lt=1.0)
    # The newest days of the prediction log the evidence is read from.
    evidence_days: int = Field(default=30, ge=1)


class ModelFamiliesModel(Strict):
    # The model families trained (lib/modeling/families.py), each an asset <task>/<family asset>
    families: list[str] = list(MODEL_FAMILIES)
    # Default hyper-parameters per family (the Launchpad can still change them per run).
    params: dict[str, dict[str, int | float | str | list[int]]] = {}
    # Hyper-parameter search per family (lib/tuning.py): space, n_trials and/or timeout_s,
    # metric, workers (pods sharing the study on Kubernetes). A family without an entry trains
    # once with its params.
    tuning: dict[str, dict[str, Any]] = {}

    @model_validator(mode="after")
    def _tuned_families_trained(self) -> "ModelFamiliesModel":
        stray = sorted(set(self.tuning) - set(self.families))
        if stray:
            raise ValueError(f"models.tuning: {stray} are not among models.families")
        return self

    @field_validator("families")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        from pipelines.platform.lib.modeling.families import FAMILIES

        unknown = sorted(set(value) - set(MODEL_FAMILIES))
        if unknown:
            raise ValueError(f"unknown model families {unknown}; known: {sorted(FAMILIES)}")
        return value


class TaskDefinition(Strict):
    """Everything the platform needs to build a prediction task's whole life."""

    # The task's name: its asset-key prefix, groups, jobs, MLflow experiment and registered model
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""  # one line, shown by `make tasks` and in the UI
    # What the model cards say a model of this task cannot do (data gaps, populations, drift).
    known_limits: list[str] = []
    domain: str = Field(description="module:attribute of the task's TaskDomain")
    partitions: PartitionsModel  # the partitions of every daily (or hourly) asset
    landing_tables: list[LandingTableModel]  # the files that land, each with its contract
    # Unpartitioned tables the domain's read_reference returns (e.g. airports)
    reference_tables: list[str] = []
    feature_tables: list[FeatureTableModel]  # computed in order, from raw or earlier tables
    examples: ExamplesModel  # which table holds one row per prediction, and its columns
    features: FeaturesModel  # the FeatureService and which features are categorical
    slices: list[str] = []  # evaluation reports AUC per value of these; the gate's slice veto
    # The rate baseline's keys (default: the first categorical feature)
    baseline_keys: list[str] = []
    # The first champion must beat the strongest of these (and of the rate by baseline_keys).
    baselines: list[BaselineModel] = []
    run_window: RunWindowModel | None = None  # what `make run` covers without START/END
    models: ModelFamiliesModel = ModelFamiliesModel()  # families and default hyper-parameters
    split: dict[str, int] = {}  # TimeSplit keys (below): validation_days, holdout_days
    gate: dict[str, int | float] = {}  # GateThresholds keys (below), the task's own values
    serving: ServingModel  # the service's request and answer
    automation: AutomationModel = AutomationModel()  # the nightly retrain schedule
    monitoring: MonitoringModel = MonitoringModel()  # how many rows make a day evidence
    rollout: RolloutModel = RolloutModel()  # shadow -> canary -> champion on live evidence

    @model_validator(mode="after")
    def _canary_has_an_entity(self) -> "TaskDefinition":
        if self.rollout.enabled and not self.serving.canary_entity:
            raise ValueError(
                "rollout.enabled: a canary needs serving.canary_entity (the request field that "
                "keeps one entity on one model)"
            )
        return self

    @model_validator(mode="after")
    def _tables_exist(self) -> "TaskDefinition":
        known = {f"raw_{t.name}" for t in self.landing_tables} | set(self.reference_tables)
        for table in self.feature_tables:
            stray = set(table.windows) - set(table.inputs)
            if stray:
                raise ValueError(
                    f"feature_tables.{table.name}.windows: not inputs: {sorted(stray)}"
                )
            for source in table.table_inputs():
                if source.table not in known:
                    raise ValueError(
                        f"feature_tables.{table.name}.inputs: unknown table {source.table!r} "
                        f"(known so far: {sorted(known)})"
                    )
            if table.feast_source and table.live is None:
                raise ValueError(
                    f"feature_tables.{table.name}.live: every Feast source declares its live "
                    "path (events, published, static, or none with a note)"
                )
            known.add(table.name)
        if self.examples.lead_minutes < 0:
            raise ValueError("examples.lead_minutes: must be 0 or more")
        if self.serving.max_batch < 1:
            raise ValueError("serving.max_batch: must be at least 1")
        if self.serving.max_body_bytes < 1:
            raise ValueError("serving.max_body_bytes: must be at least 1")
        window = (self.serving.earliest, self.serving.latest)
        if all(window) and window[0] >= window[1]:
            raise ValueError("serving.earliest: must be before serving.latest")
        if any(window) and not self.serving.time_field:
            raise ValueError("serving.earliest/latest: need serving.time_field")
        if self.examples.table not in known:
            raise ValueError(f"examples.table: unknown table {self.examples.table!r}")
        return self


@dataclass(frozen=True)
class Task:
    """A resolved definition: names, keys and partitions every stage factory shares."""

    definition: TaskDefinition
    spec: TaskSpec
    domain: TaskDomain

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def prefix(self) -> list[str]:
        return list(self.spec.asset_prefix)

    def key(self, name: str) -> dg.AssetKey:
        return dg.AssetKey([*self.prefix, name])

    def table(self, name: str) -> str:
        """The asset's table in the lake (the IO manager's path for its key)."""
        return "/".join(self.key(name).path)

    def group(self, stage: str) -> str:
        return f"{self.name}_{stage}"

    @property
    def tags(self) -> dict[str, str]:
        return {"flightline/task": self.name}

    @cached_property
    def partitions_def(self) -> dg.TimeWindowPartitionsDefinition:
        p = self.definition.partitions
        cls = dg.DailyPartitionsDefinition if p.grain == "daily" else dg.HourlyPartitionsDefinition
        return cls(start_date=p.start, end_date=p.end, timezone=p.timezone)

    def next_partition(self, key: str) -> str | None:
        return self.partitions_def.get_next_partition_key(key)

    def previous_partitions(self, key: str, count: int) -> list[str]:
        """Up to `count` partitions before `key`, oldest first (fewer at the start)."""
        keys: list[str] = []
        window = self.partitions_def.time_window_for_partition_key(key)
        while len(keys) < count:
            window = self.partitions_def.get_prev_partition_window(window.start)
            if window is None:
                break
            keys.insert(
                0, self.partitions_def.get_partition_key_range_for_time_window(window).start
            )
        return keys

    @cached_property
    def window_lookback(self) -> int:
        """How many partitions before its own a run reads (the longest feature-table window)."""
        return max(
            (w for t in self.definition.feature_tables for w in t.windows.values()), default=0
        )

    def partition_end(self, key: str):
        """The instant a partition ends (UTC): its data is complete up to here."""
        return self.partitions_def.time_window_for_partition_key(key).end

    def partition_of(self, timestamps) -> list[str]:
        """The partition key of each (UTC) instant, in the task's time zone and grain."""
        p = self.definition.partitions
        local = timestamps.dt.tz_convert(p.timezone)
        fmt = "%Y-%m-%d" if p.grain == "daily" else "%Y-%m-%d-%H:00"
        return local.dt.strftime(fmt).tolist()

    @cached_property
    def contracts(self) -> dict[str, TableContract]:
        out = {}
        for table in self.definition.landing_tables:
            contract = load_reference(
                table.contract, f"task {self.name}: landing_tables.{table.name}.contract"
            )
            if not isinstance(contract, TableContract):
                raise DefinitionError(
                    f"task {self.name}: landing_tables.{table.name}.contract is not a TableContract"
                )
            out[table.name] = contract
        return out

    def function(self, table: FeatureTableModel) -> Callable:
        fn = load_reference(
            table.function, f"task {self.name}: feature_tables.{table.name}.function"
        )
        if not callable(fn):
            raise DefinitionError(
                f"task {self.name}: feature_tables.{table.name}.function is not callable"
            )
        return fn

    def feast_objects(self, lake_root: str) -> dict:
        from pipelines.platform.lib.lake import Lake

        lake = Lake(lake_root)
        return self.domain.feature_definitions(lambda table: lake.glob(self.table(table)))

    def feature_view_names(self) -> list[str]:
        from feast import FeatureView

        return [
            name
            for name, obj in self.feast_objects("/nonexistent").items()
            if isinstance(obj, FeatureView)
        ]


def accepts(fn: Callable, parameter: str) -> bool:
    return parameter in inspect.signature(fn).parameters


def resolve(definition: TaskDefinition) -> Task:
    """Import what the definition references and build the model half's TaskSpec."""
    domain = load_reference(definition.domain, f"task {definition.name}: domain")
    if not isinstance(domain, TaskDomain):
        raise DefinitionError(f"task {definition.name}: domain must be a TaskDomain")
    served = _service_features(domain, definition.features.feature_service, definition.name)
    categorical = tuple(definition.features.categorical)
    try:
        spec = TaskSpec(
            name=definition.name,
            training_asset=(definition.name, "training_set"),
            feature_service=definition.features.feature_service,
            entity_keys=(definition.examples.id_column,),
            timestamp_column=definition.examples.timestamp,
            label_column=definition.examples.label,
            label_known_at_column=definition.examples.label_known_at,
            categorical_features=categorical,
            numeric_features=tuple(c for c in served if c not in categorical)
            + tuple(definition.features.request_numeric),
            slice_columns=tuple(definition.slices),
            baseline_keys=tuple(definition.baseline_keys),
            baselines=tuple(
                BaselineSpec(b.name, rate_by=tuple(b.rate_by), feature=b.feature)
                for b in definition.baselines
            ),
            families=tuple(definition.models.families),
            split=TimeSplit(**definition.split),
            gate=GateThresholds(**definition.gate),
            asset_prefix=(definition.name,),
            lead_minutes=definition.examples.lead_minutes,
            description=definition.description,
            known_limits=tuple(definition.known_limits),
            request_features=tuple(definition.features.request_numeric),
            timezone=definition.partitions.timezone,
        )
    except (TypeError, ValueError) as exc:
        raise DefinitionError(f"task {definition.name}: {exc}") from exc
    return Task(definition, spec, domain)


def search_specs(definition: TaskDefinition) -> dict:
    """The task's `models.tuning` blocks, parsed and checked (family name -> SearchSpec)."""
    from pipelines.platform.lib.modeling.families import family
    from pipelines.platform.lib.tuning import TuningError, parse_search

    out = {}
    for name, doc in definition.models.tuning.items():
        try:
            out[name] = parse_search(family(name), doc, f"models.tuning.{name}")
        except TuningError as exc:
            raise DefinitionError(f"task {definition.name}: {exc}") from exc
    return out


def _service_features(domain: TaskDomain, service: str, task: str) -> tuple[str, ...]:
    """The features the versioned FeatureService serves, in its order (declarations only)."""
    if domain.served_features is not None:
        try:
            return tuple(domain.served_features(service))
        except KeyError:
            raise DefinitionError(
                f"task {task}: features.feature_service: {service!r} is not declared"
            ) from None
    objects = domain.feature_definitions(lambda table: f"/nonexistent/{table}")
    if service not in objects:
        raise DefinitionError(
            f"task {task}: features.feature_service: {service!r} is not declared "
            f"(declared: {sorted(objects)})"
        )
    return tuple(f.name for p in objects[service].feature_view_projections for f in p.features)
