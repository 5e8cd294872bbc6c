"""Applying a plan that has a baseline (``baseline = true``; ``plan.BaselineStep``).

The plan's migrations up to the baseline run first (the baseline alone on an empty
database; the replaced ones still pending on an existing one), then the ADOPT rows are
written under the same lock, then the newer migrations run. Two ``MigrationRun``s with
the rows between them keep the history in the order things happened: the adoption is
recorded before any newer migration, and never before what it stands for succeeded. A
run stopped between the baseline and its ADOPT rows is completed by the next apply
(``baseline_step`` still sees an empty database).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from spawn_db.migrate.plan import BaselineStep, is_done, state_of
from spawn_db.migrate.runner import MigrationOutcome, MigrationRun
from spawn_db.migrate.tracking import Record, Tracking
from spawn_db.project import Project


class BaselineRun:
    """Duck-types ``MigrationRun`` for ``apply``: ``names`` and ``execute``."""

    def __init__(self, step: BaselineStep, names: Sequence[str], tracking: Tracking,
                 project: Project, make_run: Callable[[list[str], bool], MigrationRun]) -> None:
        self.step = step
        self.names = list(names)
        self.tracking = tracking
        self.project = project
        self.make_run = make_run
        self.adopted: list[str] = []

    def execute(self) -> list[MigrationOutcome]:
        first = [n for n in self.names if n <= self.step.name]
        rest = [n for n in self.names if n > self.step.name]
        outcomes = self.make_run(first, True).execute()
        self.adopt()
        return outcomes + self.make_run(rest, False).execute()

    def adopt(self) -> None:
        """Record ``step.adopt`` as ADOPT once what they stand for is applied."""
        from spawn_db.pin.store import read_lock

        states = self.tracking.latest()
        if not self.step.ready(states):
            return
        todo = [n for n in self.step.adopt if not is_done(state_of(states.get(n)))]
        records = [Record(n, "ADOPT", "SUCCESS",
                          pin_hash=read_lock(self.project.migration_dir(n)),
                          description=adoption_note(self.step, n))
                   for n in todo]
        self.tracking.write(records, durable=True)
        self.adopted = todo


def adoption_note(step: BaselineStep, name: str) -> str:
    """The ``description`` of an ADOPT row a baseline writes: why nothing ran."""
    if step.fresh:
        return f"replaced by baseline {step.name}"
    if name == step.name:
        return "baseline adopted: the migrations it replaces are applied"
    return f"baseline adopted: replaced by baseline {step.name}"


def baseline_note(step: BaselineStep) -> str:
    """One sentence for apply's plan and for status: what the baseline does here."""
    count = len(step.replaced)
    older = f"the {count} migration{'' if count == 1 else 's'} before it"
    are = "is" if count == 1 else "are"
    if step.fresh and step.adopt:
        return (f"{step.name} is a baseline: on this empty database it runs in place of "
                f"{older}, which {are} recorded as adopted")
    if step.fresh:
        return (f"{step.name} is a baseline: this database was built from it, and {older} "
                f"{are} recorded as adopted")
    if step.adopt:
        return (f"{step.name} is a baseline: earlier migrations are applied here, so it is "
                f"adopted (recorded, not run) once {older} {are} applied")
    return (f"{step.name} is a baseline: this database was built by {older}, and the "
            "baseline is adopted")
