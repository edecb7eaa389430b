"""`make new-task NAME=...` (`flightline new-task NAME`): write a task skeleton that loads, passes
its tests and runs end to end before any domain code is written.

Written: the domain modules (`pipelines/tasks/<name>/`: source, contracts, features, Feast
declarations, request schema, replay, domain), a small example data file tracked in git
(`pipelines/tasks/<name>/data/readings.csv`: hourly readings of a few sites, generated here from a
fixed seed), a commented `pipelines/defs/<name>/defs.yaml`, and a time-correctness test
(`tests/tasks/<name>/`). Nothing existing is overwritten."""

import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

TEMPLATE = Path(__file__).parent / "template"
NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Scaffold:
    name: str
    description: str = "Will a site's value be above 75 two hours from now?"
    timezone: str = "UTC"
    start: date = date(2024, 1, 1)
    days: int = 60
    sites: tuple[str, ...] = ("s1", "s2", "s3", "s4", "s5", "s6")
    horizon_hours: int = 2

    def values(self) -> dict[str, str]:
        rows_per_day = 24 * len(self.sites)
        return {
            "__TASK__": self.name,
            "__DESCRIPTION__": self.description,
            "__TIMEZONE__": self.timezone,
            "__START__": self.start.isoformat(),
            "__END__": (self.start + timedelta(days=self.days)).isoformat(),
            "__RUN_END__": (self.start + timedelta(days=self.days - 1)).isoformat(),
            "__SITES__": "(" + ", ".join(f'"{s}"' for s in self.sites) + ")",
            "__FIRST_SITE__": self.sites[0],
            "__SITE_COUNT__": str(len(self.sites)),
            "__ROWS_PER_DAY__": str(rows_per_day),
            "__MIN_ROWS__": str(rows_per_day * 2 // 3),
            "__HORIZON__": str(self.horizon_hours),
            "__WARM_UP__": f"{(self.start + timedelta(days=self.days - 2)).isoformat()}T12:00:00+00:00",
        }


def targets(root: Path, name: str) -> dict[str, Path]:
    """Template folder -> where its files go."""
    return {
        "task": root / "pipelines" / "tasks" / name,
        "defs": root / "pipelines" / "defs" / name,
        "tests": root / "tests" / "tasks" / name,
    }


def example_readings(scaffold: Scaffold) -> str:
    """Hourly readings of each site: a load that follows the site's daily cycle, and a value that
    follows the load with inertia (so the next hours are predictable beyond the current value)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(11)
    hours = pd.date_range(
        pd.Timestamp(scaffold.start, tz="UTC"), periods=scaffold.days * 24, freq="h"
    )
    frames = []
    for i, site in enumerate(scaffold.sites):
        phase = 2 * np.pi * (np.arange(len(hours)) + 3 * i) / 24
        load = np.clip(0.5 + 0.35 * np.sin(phase) + rng.normal(0, 0.08, len(hours)), 0, 1)
        value = np.empty(len(hours))
        value[0] = 65.0
        for h in range(1, len(hours)):
            value[h] = 0.75 * value[h - 1] + 0.25 * (50 + 40 * load[h]) + rng.normal(0, 2.0)
        frames.append(
            pd.DataFrame(
                {
                    "site": site,
                    "ts": hours.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "value": value.round(2),
                    "load": load.round(3),
                }
            )
        )
    return pd.concat(frames, ignore_index=True).to_csv(index=False)


def scaffold_task(root: Path, scaffold: Scaffold) -> list[Path]:
    """Write the skeleton under `root` (the project); returns the files written."""
    if not NAME.match(scaffold.name):
        raise ValueError(
            f"task name {scaffold.name!r}: lower case letters, digits and _, starting with a letter"
        )
    places = targets(root, scaffold.name)
    existing = [str(p) for p in places.values() if p.exists()]
    if existing:
        raise FileExistsError(f"task {scaffold.name!r} exists already: {', '.join(existing)}")
    values = scaffold.values()
    written = []
    for template in sorted(TEMPLATE.rglob("*.tmpl")):
        part, *rest = template.relative_to(TEMPLATE).parts
        target = places[part].joinpath(*rest).with_suffix("")
        text = template.read_text()
        for key, value in values.items():
            text = text.replace(key, value)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        written.append(target)
    (places["tests"] / "__init__.py").touch()
    data = places["task"] / "data" / "readings.csv"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text(example_readings(scaffold))
    return [*written, places["tests"] / "__init__.py", data]
