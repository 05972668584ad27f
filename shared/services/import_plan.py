"""The entities of one import message on their way to the target, and D365's fail-on-error rules.

A message of a file job is a plan of one entity; a data package is a plan of one entity per manifest entity,
in execution order (shared/services/package_import.py opens it). `ImportPlan.stage` stages every entity (its
file read, mapped and converted into a spool), `ImportPlan.write` writes them in order. A plan can also be
rebuilt from an earlier attempt's checkpoint (shared/services/import_checkpoint.py), with its entities'
counts and how far each was written; writing then goes on from there.

Fail-on-error rules (`FailRules`), for data packages, following D365's entity sequencing:

- An entity *fails* when it cannot be imported at all (unknown entity or format, missing or unreadable file,
  failing XSLT), and, when its level or execution unit fails on error, also when any of its records is
  rejected.
- A level fails on error when any of its entities has FailLevelOnError; an execution unit when any of its
  entities has FailExecutionUnitOnError. When an entity fails, the entities after it in the same level
  (FailLevelOnError), or in the same execution unit including later levels (FailExecutionUnitOnError), are
  not run: status NotRun, with the reason. Entities before it, and other levels or units, are unaffected.
  The failed entity's own valid records are still written (a bad value rejects a record, never the file).
- Without those flags an entity's failure affects only that entity.

The rules' state is derived from the entities' outcomes (`FailRules.replay`), so a resumed plan applies
them exactly as the attempt that staged it did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from shared.domain.schema import Entity
from shared.errors import FormatError
from shared.services.import_pipeline import EntityOutcome

# Per-entity statuses in a data package message's Counts.
ENTITY_PROCESSED = "Processed"
ENTITY_PROCESSED_WITH_ERRORS = "ProcessedWithErrors"
ENTITY_ERROR = "Error"
ENTITY_NOT_RUN = "NotRun"
ENTITY_DISABLED = "Disabled"


@dataclass
class StagedEntity:
    """One entity of a plan: its key in the message's Counts, the configured entity written (None when it
    cannot be read), its outcome so far, and its staged rows: `spool` (a local file positioned where writing
    starts) or, for a resumed plan, the checkpoint's `spool_blob` read from `offset`. `staged` is whether it
    has rows to write at all; `done` once nothing is left to do for it. The place in execution order and the
    fail flags are the manifest's (always 1 and False for a file job)."""

    key: str
    entity: Entity | None
    outcome: EntityOutcome
    spool: IO[bytes] | None = None
    staged: bool = False
    spool_blob: str | None = None
    offset: int = 0
    done: bool = False
    execution_unit: int = 1
    level: int = 1
    fail_level_on_error: bool = False
    fail_unit_on_error: bool = False


class FailRules:
    """FailLevelOnError / FailExecutionUnitOnError over a plan's entities in execution order (module doc).
    Works on anything with `key`, `execution_unit`, `level`, `fail_level_on_error`, `fail_unit_on_error`."""

    def __init__(self, entities: list) -> None:
        self._strict_levels = {(e.execution_unit, e.level) for e in entities if e.fail_level_on_error}
        self._strict_units = {e.execution_unit for e in entities if e.fail_unit_on_error}
        # The first failure (its position and entity) of each strict level and unit.
        self._failed_levels: dict[tuple[int, int], tuple[int, str]] = {}
        self._failed_units: dict[int, tuple[int, str]] = {}

    def strict(self, entity) -> bool:
        """Whether rejected records fail this entity (its level or unit fails on error)."""
        return (
            entity.execution_unit,
            entity.level,
        ) in self._strict_levels or entity.execution_unit in self._strict_units

    def failed(self, index: int, entity) -> None:
        level = (entity.execution_unit, entity.level)
        if level in self._strict_levels:
            self._failed_levels.setdefault(level, (index, entity.key))
        if entity.execution_unit in self._strict_units:
            self._failed_units.setdefault(entity.execution_unit, (index, entity.key))

    def replay(self, entities: list[StagedEntity]) -> None:
        """The failures recorded in the entities' outcomes so far (a resumed plan)."""
        for index, staged in enumerate(entities):
            outcome = staged.outcome
            if outcome.status == ENTITY_ERROR or (self.strict(staged) and outcome.rejected):
                self.failed(index, staged)

    def blocked(self, index: int, entity) -> str | None:
        """Why the entity at `index` must not run, or None."""
        unit = self._failed_units.get(entity.execution_unit)
        if unit is not None and unit[0] < index:
            return (
                f"not run: '{unit[1]}' failed and execution unit {entity.execution_unit} fails on error "
                "(FailExecutionUnitOnError)"
            )
        level = self._failed_levels.get((entity.execution_unit, entity.level))
        if level is not None and level[0] < index:
            return (
                f"not run: '{level[1]}' failed and level {entity.level} of execution unit "
                f"{entity.execution_unit} fails on error (FailLevelOnError)"
            )
        return None


@dataclass
class ImportPlan:
    """A message's staged entities in execution order. `package`: a data package (per-entity statuses and
    the fail rules apply; for a file job, the one entity's FormatError is the message's)."""

    entities: list[StagedEntity]
    package: bool
    rules: FailRules = field(init=False)

    def __post_init__(self) -> None:
        self.rules = FailRules(self.entities)
        self.rules.replay(self.entities)

    @classmethod
    def stage(
        cls,
        inputs: list,
        preprocess_one: Callable[[Any], tuple[EntityOutcome, IO[bytes]]],
        *,
        package: bool,
    ) -> ImportPlan:
        """Stage every input in order: `preprocess_one(input)` returns its outcome and spool. Package inputs
        (shared/services/package_import.PackageEntityInput) carry their place, fail flags, `disabled`, a read
        `error` and attachments; a FormatError is that entity's error. For a file job it is raised."""

        plan = cls([], package=package)
        # Built from every input first: a level is strict when any of its entities says so, later ones too.
        rules = FailRules(inputs) if package else FailRules([])
        try:
            plan._stage_all(inputs, preprocess_one, rules)
        except BaseException:
            plan.close()
            raise
        plan.rules = rules
        return plan

    def _stage_all(self, inputs: list, preprocess_one, rules: FailRules) -> None:
        from shared.services.package_import import PackageEntityOutcome

        package = self.package
        for index, inp in enumerate(inputs):
            staged = StagedEntity(
                key=getattr(inp, "key", "") or inp.entity.name,
                entity=inp.entity,
                outcome=EntityOutcome(entity=""),
                execution_unit=getattr(inp, "execution_unit", 1),
                level=getattr(inp, "level", 1),
                fail_level_on_error=getattr(inp, "fail_level_on_error", False),
                fail_unit_on_error=getattr(inp, "fail_unit_on_error", False),
            )
            outcome = staged.outcome
            why = rules.blocked(index, staged)
            if getattr(inp, "disabled", False):
                outcome.status = ENTITY_DISABLED
            elif why:
                outcome.status, outcome.error = ENTITY_NOT_RUN, why
            elif getattr(inp, "error", None):
                outcome.status, outcome.error = ENTITY_ERROR, inp.error
            else:
                try:
                    outcome, staged.spool = preprocess_one(inp)
                except FormatError as exc:
                    if not package:
                        raise
                    outcome.status, outcome.error = ENTITY_ERROR, str(exc)
                else:
                    staged.staged = True
            outcome.entity = staged.key
            # The counts of every package entity, run or not, list its attachments (they are in the package).
            staged.outcome = (
                PackageEntityOutcome.of(outcome, getattr(inp, "attachments", [])) if package else outcome
            )
            if outcome.status == ENTITY_ERROR or (rules.strict(staged) and outcome.rejected):
                rules.failed(index, staged)
            self.entities.append(staged)

    @property
    def staged_any(self) -> bool:
        return any(s.staged for s in self.entities)

    def write(
        self,
        write_one: Callable[[int, StagedEntity], None],
        after_each: Callable[[int, StagedEntity], None] | None = None,
    ) -> None:
        """Write the staged entities in order, skipping those done: `write_one(index, staged)` upserts its rows
        (and closes its spool). An entity a failure before it blocks ends NotRun with the reason.
        `after_each(index, staged)` follows each entity that ended (written or not run), its status set."""
        for index, staged in enumerate(self.entities):
            if staged.done or not staged.staged:
                continue
            outcome = staged.outcome
            why = self.rules.blocked(index, staged)
            if why:
                self._close(staged)
                outcome.status, outcome.error = ENTITY_NOT_RUN, why
                staged.done = True
                if after_each is not None:
                    after_each(index, staged)
                continue
            rejected_before = outcome.rejected
            write_one(index, staged)
            staged.spool = None
            if outcome.rejected > rejected_before and self.rules.strict(staged):
                self.rules.failed(index, staged)
            if self.package:
                outcome.status = ENTITY_PROCESSED_WITH_ERRORS if outcome.rejected else ENTITY_PROCESSED
            staged.done = True
            if after_each is not None:
                after_each(index, staged)

    @staticmethod
    def _close(staged: StagedEntity) -> None:
        if staged.spool is not None:
            staged.spool.close()
            staged.spool = None

    def close(self) -> None:
        for staged in self.entities:
            self._close(staged)

    def outcomes(self) -> list[EntityOutcome]:
        return [s.outcome for s in self.entities]

    def counts(self) -> dict:
        """The message's Counts: per entity key, its counts."""
        return {s.outcome.entity: s.outcome.counts() for s in self.entities}

    def has_problems(self) -> bool:
        return any(s.outcome.status in (ENTITY_ERROR, ENTITY_NOT_RUN) for s in self.entities)

    def reasons(self) -> list[str]:
        """One line per entity that failed or did not run, for the message's error summary."""
        return [
            f"{s.outcome.entity}: {s.outcome.error}"
            for s in self.entities
            if s.outcome.status in (ENTITY_ERROR, ENTITY_NOT_RUN) and s.outcome.error
        ]
