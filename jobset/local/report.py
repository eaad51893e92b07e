"""What the local cluster says about the sets it holds: unfinished ones, and foreign ones.

Read as ``AerJobSet.list_sets`` reads them, with the cluster's own settings, so it
reports what a producer would see.  Used when the cluster starts (sets it cannot verify,
named once), when it stops (sets that will resume on the next start), and by ``status``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import JobSetError
from ..executors.celery.executor import CeleryExecutor
from ..executors.stored import JobSetInfo, list_sets
from ..settings import Settings
from ..status import FINAL

_SHOWN = 5


@dataclass
class SetsReport:
    """The unfinished sets, and the ids of records that fail verification with this key."""

    unfinished: list[JobSetInfo] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    total: int = 0

    @classmethod
    def read(cls, settings: Settings) -> SetsReport:
        report = cls()

        def skipped(job_id: str, error: JobSetError) -> None:
            del error
            report.foreign.append(job_id)

        with CeleryExecutor(settings) as executor:
            infos = list_sets(executor, on_skip=skipped)
        report.total = len(infos)
        report.unfinished = [i for i in infos if i.status not in FINAL]
        return report

    def unfinished_lines(self, resume_hint: str) -> list[str]:
        if not self.unfinished:
            return []
        lines = [f"{len(self.unfinished)} job set(s) unfinished:"]
        lines += [
            f"  {i.job_id}  {i.status.name}  ({i.sub_jobs} sub-job(s))"
            for i in self.unfinished[:_SHOWN]
        ]
        if len(self.unfinished) > _SHOWN:
            lines.append(f"  ... and {len(self.unfinished) - _SHOWN} more (jobset ls)")
        lines.append(resume_hint)
        return lines

    def foreign_line(self) -> str | None:
        if not self.foreign:
            return None
        shown = ", ".join(self.foreign[:3]) + (" ..." if len(self.foreign) > 3 else "")
        return (
            f"{len(self.foreign)} job set record(s) here were written by another deployment's "
            f"key and cannot be read with this one ({shown}); `jobset prune` removes them"
        )
