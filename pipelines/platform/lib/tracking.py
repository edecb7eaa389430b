"""MLflow: experiments, logged and registered models, and the champion alias.

Everything goes through an explicit tracking URI and artifact root (never a stray ./mlruns).
Aliases: `challenger` marks the version under review, `champion` the one serving; a promotion
tags the new champion with the version it replaced, which is what a rollback goes back to.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.platform.lib.modeling.base import BinaryClassifier
from pipelines.platform.lib.modeling.dataset import feature_frame
from pipelines.platform.lib.object_store import ObjectStore, is_remote
from pipelines.platform.lib.settings import PROJECT_ROOT
from pipelines.platform.lib.task import TaskSpec

# MLflow costs about a second to import; every process that loads the code location imports this
# module, so MLflow is imported inside the methods that talk to it (numpy likewise).
if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import ModelSignature

CHAMPION, CHALLENGER = "champion", "challenger"
ROLLOUT_ALIASES = ("shadow", "canary")  # the alias of a challenger in each live stage
ROLLOUT_STAGE_TAG = "rollout_stage"
PROMOTED_OVER_TAG = "promoted_over"  # on a champion: the version it replaced ("" for the first)


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking store cannot be reached or used."""


class PromotionRefused(RuntimeError):
    """The registry is not in the state the promotion was decided on."""


@dataclass(frozen=True)
class ModelVersionRef:
    """A registered model version, as the model assets hand it downstream."""

    name: str
    version: str
    family: str
    run_id: str
    experiment_id: str
    model_uri: str
    train_end: str  # last timestamp the model saw (training + validation)
    summary: dict

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelVersionRef:
        return cls(**data)


def model_signature(spec: TaskSpec) -> ModelSignature:
    """Text categoricals and float64 numerics, every one optional: a feature the store lacks
    for an entity arrives as a missing value, which both families handle."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    inputs = [ColSpec("string", c, required=False) for c in spec.categorical_features]
    inputs += [ColSpec("double", c, required=False) for c in spec.numeric_features]
    return ModelSignature(
        inputs=Schema(inputs), outputs=Schema([TensorSpec(np.dtype("float64"), (-1,))])
    )


def code_version() -> str:
    """The deployed image's FLIGHTLINE_CODE_VERSION, else the git commit of the checkout."""
    if os.environ.get("FLIGHTLINE_CODE_VERSION"):
        return os.environ["FLIGHTLINE_CODE_VERSION"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return (
            out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def pip_requirements(family: str) -> list[str]:
    # Explicit: MLflow's inference would record a torch build this machine cannot install.
    packages = ["mlflow", "pandas", "numpy", "scikit-learn", "pyarrow"]
    from pipelines.platform.lib.modeling.families import family as lookup

    packages.append(lookup(family).package)
    return [f"{p}=={installed_version(p)}" for p in packages]


# The MLflow UI (3.x) opens an experiment in its model-training view with this tag, not in its
# GenAI view (traces, prompts); the UI's own constant is CUSTOM_MODEL_DEVELOPMENT.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


class ModelRegistry:
    def __init__(self, tracking_uri: str, artifact_root: str, registry_uri: str | None = None):
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        self.artifact_root = artifact_root
        for uri in {self.tracking_uri, self.registry_uri}:
            if uri.startswith("sqlite:///"):  # SQLite creates the file, not its folder
                Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # Artifacts in the object store: the environment names it (a process that only reads
        # the registry, without the variables, still works; artifact access then fails clearly).
        self._store = ObjectStore.from_env() if is_remote(artifact_root) else None
        if self._store is not None:
            # MLflow's S3 artifact client (boto3) finds the object store through these.
            for name, value in self._store.client_env().items():
                os.environ.setdefault(name, value)
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)

    @contextmanager
    def active(self) -> Iterator[None]:
        """MLflow's fluent API (log_model, load_model) reads global URIs: set them for this block
        only. set_tracking_uri also writes MLFLOW_TRACKING_URI into the environment, so the
        environment is restored too."""
        import mlflow

        names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
        saved_env = {name: os.environ.get(name) for name in names}
        previous = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.registry_uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(previous[0])
            mlflow.set_registry_uri(previous[1])
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def check_reachable(self) -> None:
        """Fail fast, naming the store, instead of deep inside a training step."""
        if self._store is not None:
            self._store.check()
        retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
        try:
            self.client.search_experiments(max_results=1)
        except Exception as exc:
            raise TrackingUnavailable(
                f"MLflow tracking store {self.tracking_uri} is unreachable or unusable: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            ) from exc
        finally:
            if retries is None:
                os.environ.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)
            else:
                os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = retries

    def experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            if EXPERIMENT_KIND_TAG not in experiment.tags:  # made before the tag was set
                self.client.set_experiment_tag(
                    experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND
                )
            return experiment.experiment_id
        location = self.artifact_root.rstrip("/") + f"/{name}"
        if "://" not in location:
            Path(location).mkdir(parents=True, exist_ok=True)
            location = Path(location).resolve().as_uri()
        try:
            return self.client.create_experiment(
                name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
            )
        except MlflowException:  # created meanwhile by a concurrent step
            return self.client.get_experiment_by_name(name).experiment_id

    @contextmanager
    def training_run(
        self, spec: TaskSpec, family: str, run_name: str, tags: dict[str, str]
    ) -> Iterator[str]:
        """The MLflow run around a whole training (yields its id): started before the model is
        fit and ended after it is logged, so its duration is the training's; an exception inside
        ends it FAILED."""
        import mlflow

        experiment_id = self.experiment_id(spec.name)
        tags = {**_set(tags), "model_family": family, "task": spec.name}
        with (
            self.active(),
            mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run,
        ):
            yield run.info.run_id

    def log_training_data(self, spec: TaskSpec, frames: dict[str, pd.DataFrame], name: str) -> None:
        """The frames a model was fit on as dataset inputs of the active run (MLflow's Datasets:
        schema, row count, digest), one per context: training, validation."""
        import mlflow

        columns = [*spec.features, spec.label_column, spec.timestamp_column]
        for context, frame in frames.items():
            data = frame[[c for c in columns if c in frame.columns]].copy()
            # MLflow's schema inference has no tz-aware type: the time column goes in as UTC text.
            data[spec.timestamp_column] = data[spec.timestamp_column].astype(str)
            dataset = mlflow.data.from_pandas(
                data, name=f"{name}:{context}", targets=spec.label_column
            )
            mlflow.log_input(dataset, context=context)

    def log_model_version(
        self,
        spec: TaskSpec,
        model: BinaryClassifier,
        *,
        params: dict,
        history: dict[str, list[float]],
        metrics: dict[str, float],
        tags: dict[str, str],
        example: pd.DataFrame,
        train_end: str,
        summary: dict,
        figures: dict[str, bytes] | None = None,
    ) -> ModelVersionRef:
        """Into the active training run: params (unset ones left out), per-iteration metrics,
        figures (PNG, under plots/), the model with signature and input example, registered as a
        new version of the task's model."""
        import mlflow

        from pipelines.platform.lib.model_pyfunc import ClassifierPyfunc

        run = mlflow.active_run()
        if run is None:
            raise RuntimeError("log_model_version runs inside training_run(...)")
        tags = {**_set(tags), "model_family": model.family, "task": spec.name}
        with self.active():
            mlflow.set_tags(tags)
            mlflow.log_params(_flat(params))
            _log_history(self.client, run.info.run_id, history)
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
            self.log_files(run.info.run_id, {f"plots/{k}": v for k, v in (figures or {}).items()})
            with tempfile.TemporaryDirectory() as tmp:
                directory = Path(tmp) / "classifier"
                model.save(directory)
                (directory / "task.json").write_text(
                    json.dumps(
                        {
                            "task": spec.name,
                            "family": model.family,
                            "categorical": list(spec.categorical_features),
                            "numeric": list(spec.numeric_features),
                        }
                    )
                )
                example = feature_frame(example, spec)
                signature = model_signature(spec)
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=ClassifierPyfunc(),
                    artifacts={"classifier": str(directory)},
                    signature=signature,
                    input_example=example,
                    pip_requirements=pip_requirements(model.family),
                    registered_model_name=spec.registered_model,
                )
        version = str(info.registered_model_version)
        for key, value in {**tags, "train_end": train_end}.items():
            self.client.set_model_version_tag(spec.registered_model, version, key, str(value))
        return ModelVersionRef(
            name=spec.registered_model,
            version=version,
            family=model.family,
            run_id=run.info.run_id,
            experiment_id=run.info.experiment_id,
            model_uri=f"models:/{spec.registered_model}/{version}",
            train_end=train_end,
            summary=summary,
        )

    def log_files(self, run_id: str, files: dict[str, bytes | str]) -> None:
        """Files into a run's artifacts, at the given relative paths (figures, reports)."""
        with tempfile.TemporaryDirectory() as tmp:
            for relative, content in files.items():
                path = Path(tmp) / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, bytes):
                    path.write_bytes(content)
                else:
                    path.write_text(content)
                folder = str(Path(relative).parent)
                self.client.log_artifact(run_id, str(path), None if folder == "." else folder)

    def read_artifact(self, run_id: str, path: str) -> str:
        """One text artifact of a run (OSError or MlflowException when it is not there)."""
        with tempfile.TemporaryDirectory() as tmp:
            local = self.client.download_artifacts(run_id, path, tmp)
            return Path(local).read_text()

    def start_trial_run(self, parent_run_id: str, name: str, params: dict, tags: dict) -> str:
        """A child run of a training run (a tuning trial), shown nested under it in the UI."""
        parent = self.client.get_run(parent_run_id)
        run = self.client.create_run(
            parent.info.experiment_id,
            run_name=name,
            tags={**_set(tags), "mlflow.parentRunId": parent_run_id},
        )
        from mlflow.entities import Param

        self.client.log_batch(
            run.info.run_id, params=[Param(k, str(v)) for k, v in _flat(params).items()]
        )
        return run.info.run_id

    def end_trial_run(
        self, run_id: str, state: str, history: dict[str, list[float]], metrics: dict
    ) -> None:
        """Its curves (as far as it got), metrics and Optuna state; pruned and failed trials end
        KILLED and FAILED, so the UI tells them from complete ones at a glance."""
        from mlflow.entities import Metric

        _log_history(self.client, run_id, history)
        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()]
        )
        self.client.set_tag(run_id, "optuna.state", state)
        status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(state, "FAILED")
        self.client.set_terminated(run_id, status)

    def log_report(
        self,
        experiment: str,
        run_name: str,
        metrics: dict[str, float],
        tags: dict[str, str],
        files: Sequence[Path] = (),
        pictures: dict[str, bytes] | None = None,
    ) -> tuple[str, str]:
        """A monitoring run: metrics, report files (MLflow's UI renders an HTML artifact) and
        `pictures` (artifact name -> PNG bytes)."""
        from mlflow.entities import Metric

        experiment_id = self.experiment_id(experiment)
        run = self.client.create_run(experiment_id, run_name=run_name, tags=tags)
        self.client.log_batch(
            run.info.run_id,
            metrics=[
                Metric(k, float(v), int(time.time() * 1000), 0)
                for k, v in metrics.items()
                if v == v  # NaN (an insufficient day) is not a metric MLflow can chart
            ],
        )
        for path in files:
            self.client.log_artifact(run.info.run_id, str(path))
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in (pictures or {}).items():
                (Path(tmp) / name).write_bytes(data)
                self.client.log_artifact(run.info.run_id, str(Path(tmp) / name))
        self.client.set_terminated(run.info.run_id)
        return experiment_id, run.info.run_id

    def load(self, model_uri: str):
        import mlflow

        with self.active():
            return mlflow.pyfunc.load_model(model_uri)

    def alias(self, name: str, alias: str):
        """The version behind an alias, or None (also when the model is not registered yet)."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def champion_version(self, name: str) -> str | None:
        current = self.alias(name, CHAMPION)
        return str(current.version) if current else None

    def mark_challenger(self, name: str, version: str) -> None:
        self.client.set_registered_model_alias(name, CHALLENGER, version)

    def record_gate_verdict(
        self, name: str, version: str, passed: bool, reasons: list[str]
    ) -> None:
        """The gate's verdict on the version; a refused one loses `@challenger`, so that no alias
        of a model that lost reads as a live candidate."""
        self.client.set_model_version_tag(name, version, "gate", "passed" if passed else "refused")
        self.client.set_model_version_tag(name, version, "gate_reasons", "; ".join(reasons)[:5000])
        if passed:
            return
        current = self.alias(name, CHALLENGER)
        if current is not None and str(current.version) == str(version):
            self.client.delete_registered_model_alias(name, CHALLENGER)

    def gate_verdict(self, name: str, version: str) -> tuple[str | None, str]:
        """What the gate recorded on the version: ("passed" | "refused" | None, its reasons)."""
        tags = self.client.get_model_version(name, version).tags
        return tags.get("gate"), tags.get("gate_reasons", "")

    def record_evaluation(
        self, name: str, version: str, run_id: str, metrics: dict, tags: dict
    ) -> None:
        for key, value in metrics.items():
            self.client.log_metric(run_id, f"holdout_{key}", float(value))
            self.client.set_model_version_tag(name, version, f"holdout_{key}", f"{value:.6g}")
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, str(value))

    def promote(
        self, name: str, version: str, expected_champion: str | None, tags: dict
    ) -> str | None:
        """Point `champion` at `version` if the champion is still the one the gate compared
        against (another run may have promoted meanwhile). Returns the replaced version."""
        current = self.champion_version(name)
        if current != expected_champion:
            raise PromotionRefused(
                f"{name}: champion is v{current} but the gate compared against "
                f"v{expected_champion}; re-run the evaluation"
            )
        evaluated = self.client.get_model_version(name, version).tags.get("evaluated_by_run")
        if not evaluated:
            raise PromotionRefused(f"{name} v{version} has no holdout evaluation recorded")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.client.set_model_version_tag(name, version, PROMOTED_OVER_TAG, current or "")
        self.client.set_model_version_tag(name, version, "promoted_at", stamp)
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, str(value))
        # The alias moves last, in one call: an interrupted promotion leaves the old champion.
        self.client.set_registered_model_alias(name, CHAMPION, version)
        return current

    # A staged rollout (docs/rollout-and-alerts.md): the challenger's version sits at the alias
    # of its stage (@shadow, then @canary) and carries its state as tags, so the MLflow UI shows
    # where it is and why; @champion moves only when the live gate (or a human) promotes it.
    def rollout_version(self, name: str):
        """The version in rollout (at @shadow or @canary), or None."""
        for stage in ROLLOUT_ALIASES:
            current = self.alias(name, stage)
            if current is not None:
                return current
        return None

    def rollout_state(self, name: str):
        """The rollout in progress as a RolloutState, or None."""
        from pipelines.platform.lib.rollout import RolloutState

        current = self.rollout_version(name)
        if current is None:
            return None
        tags = current.tags
        return RolloutState(
            tags.get(ROLLOUT_STAGE_TAG, "shadow"),
            str(current.version),
            tags.get("rollout_champion", ""),
            float(tags.get("rollout_canary_share", "0.1")),
            tags.get("rollout_decision", ""),
        )

    def start_rollout(self, name: str, state, started_by_run: str):
        """A challenger that passed the offline gate enters shadow beside the champion; a
        rollout still in progress ends as a rollback (superseded). Returns the superseded
        state, or None."""
        from pipelines.platform.lib.rollout import superseded

        previous = self.rollout_state(name)
        if previous is not None and previous.challenger_version != state.challenger_version:
            self.apply_rollout(name, superseded(previous, state.challenger_version))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.client.set_model_version_tag(
            name, state.challenger_version, "rollout_started_at", stamp
        )
        self.client.set_model_version_tag(
            name, state.challenger_version, "rollout_started_by_run", started_by_run
        )
        self.apply_rollout(name, state)
        return previous

    def apply_rollout(self, name: str, state) -> str | None:
        """The registry after a rollout transition: tags with the stage and the decision, the
        stage's alias; `champion` promotes the challenger (returns the version it replaced),
        `rollback` takes its rollout alias away and leaves @champion where it is."""
        version = state.challenger_version
        tags = {
            ROLLOUT_STAGE_TAG: state.stage,
            "rollout_champion": state.champion_version,
            "rollout_canary_share": str(state.canary_share),
            "rollout_decision": state.decision[:5000],
        }
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, value)
        replaced = None
        if state.stage == "champion":
            replaced = self.promote(
                name,
                version,
                expected_champion=state.champion_version or None,
                tags={"promoted_by": "rollout"},
            )
        for alias in ROLLOUT_ALIASES:
            current = self.alias(name, alias)
            held = current is not None and str(current.version) == str(version)
            if alias == state.stage and not held:
                self.client.set_registered_model_alias(name, alias, version)
            elif alias != state.stage and held:
                self.client.delete_registered_model_alias(name, alias)
        return replaced

    def rollback(self, name: str) -> tuple[str, str]:
        """Point `champion` back at the version the current champion replaced."""
        current = self.alias(name, CHAMPION)
        if current is None:
            raise PromotionRefused(f"{name}: no champion to roll back")
        previous = current.tags.get(PROMOTED_OVER_TAG, "")
        if not previous:
            raise PromotionRefused(
                f"{name}: champion v{current.version} replaced no earlier champion; nothing to roll back to"
            )
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.client.set_model_version_tag(name, current.version, "rolled_back_at", stamp)
        self.client.set_registered_model_alias(name, CHAMPION, previous)
        return str(current.version), previous


def _set(values: dict) -> dict:
    """Without the unset entries (None, ""): MLflow would show them as the text "None"."""
    return {k: v for k, v in values.items() if v is not None and v != ""}


def _flat(params: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in _set(params).items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = (
                value if not isinstance(value, (list, tuple)) else json.dumps(list(value))
            )
    return out


def _log_history(client: MlflowClient, run_id: str, history: dict[str, list[float]]) -> None:
    """Per-iteration (LightGBM) or per-epoch (torch) curves, as stepped metrics, in batches."""
    import numpy as np
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [
        Metric(key, float(value), now, step)
        for key, values in history.items()
        for step, value in enumerate(values)
        if np.isfinite(value)
    ]
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])


def __getattr__(name: str):
    # Models logged before the wrapper moved to model_pyfunc.py were pickled as
    # `pipelines.platform.lib.tracking.ClassifierPyfunc`: unpickling them looks it up here.
    if name == "ClassifierPyfunc":
        from pipelines.platform.lib.model_pyfunc import ClassifierPyfunc

        return ClassifierPyfunc
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
