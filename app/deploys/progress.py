"""A deployment's progress line: clone → build → start → health → switch, each step
done, current, failed or pending.

It is read from the row alone: the pipeline writes ``deployments.step`` as it
advances and keeps it on a deployment that fails or is cancelled (rows that ended
before it did were filled in from their logs by migration 0006).
"""

from __future__ import annotations

from app.models import SERVED_STATUSES, Deployment, DeployStep

STEPS = tuple(step.value for step in DeployStep)


def steps(deployment: Deployment) -> list[tuple[str, str]]:
    """The progress line as ``(step, state)``.

    While a deployment runs, its step is current. A served one (running, or
    replaced since) shows every step done; one that ended otherwise shows the
    steps before the one it stopped in as done and that one as failed. Nothing
    to show (queued, or stopped before the first step): an empty list.
    """
    if deployment.status in SERVED_STATUSES:
        return [(step, "done") for step in STEPS]
    if deployment.step not in STEPS:
        return []
    here = "failed" if deployment.is_final else "current"
    index = STEPS.index(deployment.step)
    return [
        (step, "done" if i < index else here if i == index else "pending")
        for i, step in enumerate(STEPS)
    ]
