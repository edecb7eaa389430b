"""What the platform's processes print: notices a user can do nothing about stay out of the
console and of the run logs the UI shows. Called where a process starts (the code location,
the command line)."""

import os
import warnings

import dagster as dg

# MLflow's advisory warnings (an input example, type hints) carry raw ANSI colour codes, which
# the UI's logs and any non-terminal show as "\x1b[33;1m...": advice about its own API, not ours.
ANSI_WARNING = "\x1b\\["


def quiet_console() -> None:
    # Dagster's beta/preview notices are about its own internals (raised while loading our
    # definitions), not about anything the project chose.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    warnings.filterwarnings("ignore", message=ANSI_WARNING, module="mlflow")
    # Read by MLflow when first imported: no download bars in step logs.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
