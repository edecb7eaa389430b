"""Flight delay: the model half of the graph built from its task spec."""

from pipelines.platform.components.model import task_definitions
from pipelines.tasks import TASKS

defs = task_definitions(TASKS[0])
