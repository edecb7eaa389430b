"""Binds resources to their locations: the embedded default, or what the environment says."""

import os

from pipelines.platform.lib.settings import PROJECT_ROOT, DataPaths
from pipelines.platform.resources import (
    AlertSinks,
    BentoResource,
    FeastResource,
    LakeIOManager,
    LakeResource,
    LandingZone,
    MlflowResource,
    RetrainPolicy,
    ServiceDeploymentResource,
)


def mlflow_ui_url() -> str:
    """FLIGHTLINE_MLFLOW_UI_URL, else the local UI on MLFLOW_PORT (`make mlflow`'s, default 5000)."""
    port = os.environ.get("MLFLOW_PORT") or "5000"
    return os.environ.get("FLIGHTLINE_MLFLOW_UI_URL") or f"http://127.0.0.1:{port}"


def alert_sinks() -> AlertSinks:
    """FLIGHTLINE_ALERT_WEBHOOK_URL (Slack-compatible) and FLIGHTLINE_ALERT_SMTP_* (a mail relay);
    unset, alerts are recorded but not sent."""
    env = os.environ.get
    return AlertSinks(
        webhook_url=env("FLIGHTLINE_ALERT_WEBHOOK_URL", ""),
        smtp_host=env("FLIGHTLINE_ALERT_SMTP_HOST", ""),
        smtp_port=int(env("FLIGHTLINE_ALERT_SMTP_PORT") or 25),
        smtp_sender=env("FLIGHTLINE_ALERT_SMTP_FROM") or "flightline@localhost",
        smtp_recipients=[
            a.strip() for a in env("FLIGHTLINE_ALERT_SMTP_TO", "").split(",") if a.strip()
        ],
        smtp_username=env("FLIGHTLINE_ALERT_SMTP_USER", ""),
        smtp_password=env("FLIGHTLINE_ALERT_SMTP_PASSWORD", ""),
        smtp_starttls=env("FLIGHTLINE_ALERT_SMTP_STARTTLS", "") in ("1", "true", "yes"),
        rate_limit_count=int(env("FLIGHTLINE_ALERT_RATE_LIMIT") or 20),
        rate_limit_window_s=float(env("FLIGHTLINE_ALERT_RATE_WINDOW_S") or 600),
    )


def embedded_resources(paths: DataPaths | None = None) -> dict:
    """The embedded default, or the production profile when FLIGHTLINE_POSTGRES_URL /
    FLIGHTLINE_REDIS_URL are set (DataPaths reads them): same resources, other locations."""
    paths = paths or DataPaths.from_env()
    return {
        "io_manager": LakeIOManager(lake_root=paths.lake),
        "lake": LakeResource(lake_root=paths.lake),
        "landing": LandingZone(landing_dir=str(paths.landing), archive_dir=str(paths.archive)),
        "feast": FeastResource(
            registry_path=str(paths.feast_registry),
            online_store_path=str(paths.feast_online_store),
            lake_root=paths.lake,
            repo_path=str(PROJECT_ROOT / "feature_repo"),
            redis_url=paths.feast_redis_url,
        ),
        "bento": BentoResource(
            home=str(paths.bentoml_home), serving_dir=str(paths.root / "serving")
        ),
        "retrain_policy": RetrainPolicy(),
        "alerts": alert_sinks(),
        # FLIGHTLINE_K8S_NAMESPACE: the namespace of the services' Deployments (production);
        # FLIGHTLINE_KUBECONFIG: a kubeconfig, else the pod's own service account.
        "deployment": ServiceDeploymentResource(
            namespace=os.environ.get("FLIGHTLINE_K8S_NAMESPACE") or None,
            kubeconfig=os.environ.get("FLIGHTLINE_KUBECONFIG") or None,
        ),
        "mlflow": MlflowResource(
            tracking_uri=paths.mlflow_tracking_uri,
            artifact_root=paths.mlflow_artifact_root,
            ui_url=mlflow_ui_url(),
        ),
    }
