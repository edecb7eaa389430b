"""Hyper-parameter search for a model family: an Optuna study in a shared database, pruning on
the family's validation curve, every trial an MLflow child run of the family's run.

The study lives in a database (the Dagster instance's: a SQLite file beside its storage, or a
schema of its PostgreSQL database in production), not in the process: a tuning run killed mid-study
resumes where it stopped (finished trials are kept and counted, a trial cut off by the crash is
marked failed once its heartbeat is stale), and several workers can share one study.
"""

import dataclasses
import hashlib
import json
import os
import socket
import time
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipelines.platform.lib.modeling.families import ModelFamily

if TYPE_CHECKING:
    import optuna

METRICS = {"roc_auc": "maximize", "log_loss": "minimize"}
# A worker's heartbeat: a trial whose heartbeat is older than the grace period belonged to a
# process that died; the next worker marks it failed (it never counts towards n_trials).
HEARTBEAT_S = 10
GRACE_S = 30
POSTGRES_SCHEMA = (
    "flightline_optuna"  # Optuna's tables (alembic_version among them) apart from Dagster's
)


class TuningError(ValueError):
    """A search space or tuning setting that cannot be used; the message names the field."""


class NoTrialCompleted(RuntimeError):
    """Every trial of the study was pruned or failed: there is no best trial to refit."""


@dataclass(frozen=True)
class ParamRange:
    """One searched hyper-parameter: a numeric range (ints for int fields), or choices."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None


@dataclass(frozen=True)
class SearchSpec:
    space: tuple[ParamRange, ...]
    n_trials: int | None = 20
    timeout_s: float | None = None
    metric: str = "roc_auc"  # on the validation days: roc_auc (maximized) or log_loss
    prune: bool = True
    startup_trials: int = 5  # trials before TPE models the space and before pruning starts
    # Processes sharing the study: on Kubernetes the step pod plus workers - 1 worker pods
    # (lib/tuning_pods.py). Not part of the study's identity: a resumed study may use more.
    workers: int = 1
    # How long the step waits for its worker pods to begin a trial (pod start, image pull), and
    # for them to end once its own trials are done (at most the trial each has in flight).
    worker_start_s: float = 600
    worker_grace_s: float = 1800

    @property
    def direction(self) -> str:
        return METRICS[self.metric]

    def fingerprint(self) -> str:
        """What makes two tuning runs the same study (budgets may grow between them)."""
        doc = {"space": [dataclasses.asdict(p) for p in self.space], "metric": self.metric}
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=list).encode()).hexdigest()[
            :10
        ]


def parse_search(family: ModelFamily, doc: dict[str, Any], where: str) -> SearchSpec:
    """A defs.yaml `models.tuning.<family>` block -> SearchSpec, checked against the family's
    hyper-parameters (names, and int/float ranges by the field's type)."""
    known = {f.name: f for f in dataclasses.fields(family.params_type())}
    hints = typing.get_type_hints(family.params_type())
    space = []
    for name, spec in (doc.get("space") or {}).items():
        if name not in known:
            raise TuningError(
                f"{where}.space.{name}: not a {family.name} parameter ({sorted(known)})"
            )
        if name == "seed":
            raise TuningError(f"{where}.space.seed: the seed is not a hyper-parameter to search")
        if "choices" in spec:
            choices = tuple(tuple(c) if isinstance(c, list) else c for c in spec["choices"])
            if not choices:
                raise TuningError(f"{where}.space.{name}.choices: empty")
            space.append(ParamRange(name, choices=choices))
            continue
        if "low" not in spec or "high" not in spec or spec["low"] >= spec["high"]:
            raise TuningError(f"{where}.space.{name}: give low < high, or choices")
        if hints[name] not in (int, float):
            raise TuningError(f"{where}.space.{name}: a {hints[name]} parameter takes choices")
        if spec.get("log") and spec["low"] <= 0:
            raise TuningError(f"{where}.space.{name}: a log range needs low > 0")
        space.append(ParamRange(name, spec["low"], spec["high"], bool(spec.get("log", False))))
    if not space:
        raise TuningError(f"{where}.space: empty (leave tuning out to train once)")
    metric = doc.get("metric", "roc_auc")
    if metric not in METRICS:
        raise TuningError(f"{where}.metric: {metric!r}; known: {sorted(METRICS)}")
    n_trials, timeout_s = doc.get("n_trials"), doc.get("timeout_s")
    if n_trials is None and timeout_s is None:
        raise TuningError(f"{where}: give n_trials or timeout_s (a budget)")
    workers = doc.get("workers", 1)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise TuningError(f"{where}.workers: {workers!r}; give an integer >= 1")
    return SearchSpec(
        space=tuple(space),
        n_trials=n_trials,
        timeout_s=timeout_s,
        metric=metric,
        prune=bool(doc.get("prune", True)),
        startup_trials=int(doc.get("startup_trials", 5)),
        workers=workers,
        worker_start_s=float(doc.get("worker_start_s", 600)),
        worker_grace_s=float(doc.get("worker_grace_s", 1800)),
    )


def spec_to_json(spec: SearchSpec) -> str:
    """A SearchSpec as text for a worker process (tuples travel as lists)."""
    return json.dumps(dataclasses.asdict(spec))


def spec_from_json(text: str) -> SearchSpec:
    doc = json.loads(text)
    space = tuple(
        ParamRange(
            **{
                **p,
                "choices": None
                if p["choices"] is None
                else tuple(tuple(c) if isinstance(c, list) else c for c in p["choices"]),
            }
        )
        for p in doc.pop("space")
    )
    return SearchSpec(space=space, **doc)


def worker_name() -> str:
    """Who runs a trial: the pod's name on Kubernetes (its HOSTNAME), else host and process."""
    return os.environ.get("HOSTNAME") or f"{socket.gethostname()}:{os.getpid()}"


def _stored_choice(choice: Any) -> Any:
    """A choice as Optuna stores it: scalars as they are, a tuple (hidden layers) as JSON text."""
    return json.dumps(list(choice)) if isinstance(choice, tuple) else choice


def suggest(trial: "optuna.Trial", family: ModelFamily, spec: SearchSpec) -> dict[str, Any]:
    hints = typing.get_type_hints(family.params_type())
    values: dict[str, Any] = {}
    for p in spec.space:
        if p.choices is not None:
            # Optuna stores only scalars: a tuple choice (hidden layers) travels as JSON text.
            encoded = [_stored_choice(c) for c in p.choices]
            picked = trial.suggest_categorical(p.name, encoded)
            values[p.name] = (
                tuple(json.loads(picked))
                if isinstance(picked, str) and picked.startswith("[")
                else picked
            )
        elif hints[p.name] is int:
            values[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)
        else:
            values[p.name] = trial.suggest_float(p.name, float(p.low), float(p.high), log=p.log)
    return values


def starting_point(family: ModelFamily, spec: SearchSpec, base_params: dict[str, Any]) -> dict:
    """The task's own parameters (its defs.yaml values over the family's defaults), as the
    study's first trial: the search starts from what trains today, so the best trial can only be
    as good or better on validation. Values outside the space are left for the sampler."""
    defaults = dataclasses.asdict(family.make_params(base_params))
    point: dict[str, Any] = {}
    for p in spec.space:
        value = defaults[p.name]
        if p.choices is not None:
            choice = tuple(value) if isinstance(value, (list, tuple)) else value
            if choice in p.choices:
                point[p.name] = _stored_choice(choice)
        elif p.low <= value <= p.high:
            point[p.name] = value
    return point


def decode(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's stored params -> hyper-parameter values (JSON-text tuples back to tuples)."""
    return {
        k: tuple(json.loads(v)) if isinstance(v, str) and v.startswith("[") else v
        for k, v in params.items()
    }


def open_storage(url: str, heartbeat_s: int | None = HEARTBEAT_S, grace_s: int | None = GRACE_S):
    """Optuna's RDB storage at `url`; on PostgreSQL in a schema of its own."""
    import optuna

    engine_kwargs: dict[str, Any] = {}
    if url.startswith("postgresql"):
        import sqlalchemy

        engine = sqlalchemy.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f"CREATE SCHEMA IF NOT EXISTS {POSTGRES_SCHEMA}"))
        engine.dispose()
        engine_kwargs["connect_args"] = {"options": f"-csearch_path={POSTGRES_SCHEMA}"}
    elif url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 60}  # workers and heartbeats share one file
    with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s, grace_period=grace_s
        )


class TrialLog(typing.Protocol):
    """Where each trial is recorded (MLflow child runs in the platform)."""

    def start(self, number: int, params: dict) -> str: ...

    def end(self, run_id: str, state: str, history: dict, metrics: dict) -> None: ...


class TrialRuns:
    """Each Optuna trial as an MLflow child run of the family's training run (`registry`: a
    tracking.ModelRegistry), tagged with the study, the trial and whatever `tags` add."""

    def __init__(self, registry, parent_run_id: str, study: str, tags: dict):
        self.registry, self.parent, self.study, self.tags = registry, parent_run_id, study, tags

    def start(self, number: int, params: dict) -> str:
        tags = {**self.tags, "optuna.study": self.study, "optuna.trial": str(number)}
        return self.registry.start_trial_run(self.parent, f"trial-{number}", params, tags)

    def end(self, run_id: str, state: str, history: dict, metrics: dict) -> None:
        self.registry.end_trial_run(run_id, state, history, metrics)


@dataclass
class TuningResult:
    study_name: str
    best_params: dict[str, Any]
    best_value: float
    best_trial: int
    trials: dict[str, int]  # state -> count, over the whole study (earlier runs included)
    ran_here: int  # trials this call ran
    seconds: float
    metric: str
    history: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "study": self.study_name,
            "best_trial": self.best_trial,
            f"best_valid_{self.metric}": round(self.best_value, 6),
            "trials_complete": self.trials.get("COMPLETE", 0),
            "trials_pruned": self.trials.get("PRUNED", 0),
            "trials_failed": self.trials.get("FAIL", 0),
            "trials_run_now": self.ran_here,
            "tuning_seconds": round(self.seconds, 1),
        }


def tune(
    family: ModelFamily,
    spec: SearchSpec,
    args: tuple,
    base_params: dict[str, Any],
    *,
    storage,
    study_name: str,
    seed: int,
    trial_log: TrialLog | None = None,
    score: Callable[[Any, Any, Any], dict] | None = None,
    log: Callable[[str], None] = lambda _: None,
    n_trials: int | None = None,
    worker: int = 0,
) -> TuningResult:
    """Run (or resume) the study until it holds `n_trials` finished (complete or pruned) trials
    or `timeout_s` has passed in this call; return its best trial. `args` are the family's
    (train_x, train_y, valid_x, valid_y, categorical); `score(y, p)` the metrics of a fit.
    `worker`: this process's index among those sharing the study (0: the step)."""
    import optuna

    from pipelines.platform.lib.evaluation import binary_metrics

    score = score or binary_metrics
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    target = n_trials if n_trials is not None else spec.n_trials
    finished_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    probe = (
        optuna.load_study(study_name=study_name, storage=storage)
        if _exists(storage, study_name)
        else None
    )
    done_before = len(probe.get_trials(deepcopy=False)) if probe is not None else 0
    # A resumed study gets a sampler seeded apart from the first run's, and each parallel worker
    # one of its own: the same seed would draw the same random start-up points again.
    sampler = optuna.samplers.TPESampler(
        seed=seed + 1000 * done_before + 7919 * worker, n_startup_trials=spec.startup_trials
    )
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials, n_warmup_steps=1)
        if spec.prune
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction=spec.direction,
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    if done_before == 0 and worker == 0:
        study.enqueue_trial(starting_point(family, spec, base_params), skip_if_exists=True)
    curve_key = family.curves[spec.metric]
    every = family.report_every
    train = family.train_fn()
    ran, here = 0, worker_name()

    def objective(trial: optuna.Trial) -> float:
        nonlocal ran
        ran += 1
        trial.set_user_attr("worker", here)  # set first: the step sees its workers have begun
        values = suggest(trial, family, spec)
        params = family.make_params({**base_params, **values})
        run_id = trial_log.start(trial.number, values) if trial_log else None
        seen: dict[str, list[float]] = {}

        def on_epoch(step: int, history: dict) -> None:
            seen.clear()
            seen.update(history)
            if spec.prune and (step + 1) % every == 0:
                trial.report(float(history[curve_key][-1]), step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at {family.step_unit} {step + 1}")

        try:
            result = train(*args, params, on_epoch=on_epoch)
        except optuna.TrialPruned:
            if trial_log:
                trial_log.end(run_id, "PRUNED", seen, {})
            log(
                f"trial {trial.number}: pruned after {len(next(iter(seen.values()), []))} {family.step_unit}s"
            )
            raise
        except Exception:
            if trial_log:
                trial_log.end(run_id, "FAIL", seen, {})
            raise
        metrics = score(args[3], result.model.predict_proba(args[2]))
        value = float(metrics[spec.metric])
        for key, number in result.summary.items():
            if isinstance(number, (int, float)) and not isinstance(number, bool):
                trial.set_user_attr(key, number)
        if trial_log:
            trial_log.end(
                run_id, "COMPLETE", result.history, {f"valid_{k}": v for k, v in metrics.items()}
            )
        log(f"trial {trial.number}: valid {spec.metric} {value:.5f} with {values}")
        return value

    started = time.perf_counter()
    callbacks = [optuna.study.MaxTrialsCallback(target, states=finished_states)] if target else []
    remaining = None
    if target is not None:
        remaining = max(0, target - _count(study, finished_states))
    if remaining != 0:
        study.optimize(
            objective,
            n_trials=remaining,
            timeout=spec.timeout_s,
            callbacks=callbacks,
            catch=(),
            gc_after_trial=True,
        )
    return study_result(study, spec.metric, ran, time.perf_counter() - started)


def ensure_study(storage, study_name: str, spec: SearchSpec):
    """Create the study (if new) before workers open it: two processes creating one study at
    once race on its row."""
    import optuna

    return optuna.create_study(
        study_name=study_name, storage=storage, direction=spec.direction, load_if_exists=True
    )


def workers_seen(study) -> set[str]:
    """The workers (pod names) that have begun a trial of the study."""
    return {
        t.user_attrs["worker"] for t in study.get_trials(deepcopy=False) if "worker" in t.user_attrs
    }


def study_result(study, metric: str, ran_here: int, seconds: float) -> TuningResult:
    """The study's best trial and counts as they stand (every worker's trials included)."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise NoTrialCompleted(
            f"study {study.study_name}: no trial completed (states: {_states(trials)})"
        )
    best = study.best_trial
    return TuningResult(
        study_name=study.study_name,
        best_params=decode(best.params),
        best_value=float(best.value),
        best_trial=best.number,
        trials=_states(trials),
        ran_here=ran_here,
        seconds=seconds,
        metric=metric,
        history=[
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "params": t.params,
                "worker": t.user_attrs.get("worker"),
            }
            for t in trials
        ],
    )


def _exists(storage, name: str) -> bool:
    return any(s.study_name == name for s in storage.get_all_studies())


def _count(study, states) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


def _states(trials) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def study_name(task: str, family: str, window: str, spec: SearchSpec, base: dict) -> str:
    """One study per task, family, training window, search space and fixed parameters: a re-run
    of the same tuning resumes it, a new window or space starts a new one."""
    fixed = hashlib.sha256(json.dumps(base, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return f"{task}.{family}.{window}.{spec.fingerprint()}{fixed}"
