"""What a fine-tune run reports: one JSON line from the child process to the bot, the CLI and the admins.

Its own module, so that the bot's process reads reports without importing the training code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bot.db import versions
from bot.db.versions import VersionRecord

Status = Literal["promoted", "rejected", "skipped", "busy"]
EXIT_BUSY = 75  # EX_TEMPFAIL: `nameorigin finetune` found another run holding the lock


@dataclass(frozen=True)
class RunReport:
    """What a run did, in a form that crosses the process boundary as one JSON line."""

    status: Status
    message: str
    live_version: str | None = None
    version: str | None = None
    live: dict[str, Any] | None = None  # gate scores of the model that was live
    candidate: dict[str, Any] | None = None  # gate scores of the fine-tuned model
    feedback: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> str:
        """One line of JSON."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> RunReport:
        """Parse what ``to_json`` wrote."""
        return cls(**json.loads(line))

    @classmethod
    def from_record(cls, run: VersionRecord) -> RunReport:
        """The report a run whose row is ``run`` printed (or would have, had it lived to print it)."""
        status: Status = "promoted" if run.decision == versions.PROMOTED else "rejected"
        metrics = run.metrics
        return cls(
            status,
            run.reason or "",
            run.parent_version,
            run.version,
            metrics.get("live"),
            metrics.get("candidate"),
            metrics.get("feedback", {}),
            metrics.get("seconds", 0.0),
        )
