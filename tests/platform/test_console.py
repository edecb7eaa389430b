"""The platform's processes keep notices a user can do nothing about out of their logs."""

import warnings

import dagster as dg

from pipelines.platform.console import quiet_console


def _shown(message: str, category: type[Warning], module: str) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_console()
        warnings.warn_explicit(message, category, "somewhere.py", 1, module=module)
    return [str(w.message) for w in caught]


def test_mlflows_coloured_advice_and_dagsters_beta_notices_are_not_shown():
    assert (
        _shown("\x1b[33;1mAn input example was not provided\x1b[0m", UserWarning, "mlflow.pyfunc")
        == []
    )
    assert (
        _shown("Parameter `execution_type` is currently in beta", dg.BetaWarning, "dagster._core")
        == []
    )


def test_other_warnings_still_are():
    assert _shown("a plain MLflow warning", UserWarning, "mlflow.pyfunc") == [
        "a plain MLflow warning"
    ]
    assert _shown("\x1b[1mcoloured, but ours\x1b[0m", UserWarning, "pipelines.platform") != []


def test_mlflow_registration_lines_are_dropped_and_other_lines_kept(capsys):
    from mlflow.utils.logging_utils import eprint

    from pipelines.platform.compat import silence_mlflow_event_lines

    silence_mlflow_event_lines()
    silence_mlflow_event_lines()  # idempotent
    eprint("Successfully registered model 'toy'.")
    eprint("Registered model 'toy' already exists. Creating a new version of this model...")
    eprint("Created version '2' of model 'toy'.")
    eprint("an MLflow error worth reading")
    assert capsys.readouterr().err == "an MLflow error worth reading\n"
