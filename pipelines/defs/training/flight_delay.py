"""Flight delay: the model half of the graph built from its task spec."""

from pipelines.model_assets import task_definitions
from pipelines.tasks import TASKS

defs = task_definitions(TASKS[0])
