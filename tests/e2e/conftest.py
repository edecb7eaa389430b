"""The e2e tests share the nine-day pipeline fixture defined in tests/pipeline_fixture.py."""

from tests.pipeline_fixture import DAYS, END, MODEL_RUN_CONFIG, SPLIT, START

__all__ = ["DAYS", "END", "MODEL_RUN_CONFIG", "SPLIT", "START"]
