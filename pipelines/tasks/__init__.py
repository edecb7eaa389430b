"""The prediction tasks this code location serves. A new task: its spec here, its training table
asset under defs/, and one module under defs/training/ calling task_definitions(spec)."""

from pipelines.tasks.flight_delay.task import flight_delay_spec

TASKS = (flight_delay_spec(),)
