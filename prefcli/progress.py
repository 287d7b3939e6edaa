"""One progress display for every long loop, and the one callback type library code reports through.

Library functions take ``progress: Progress | None`` and call ``progress(phase, done, total, metrics)``
(``total`` may be None when unknown, ``metrics`` may be left out). The CLI passes ``ProgressBar.callback()``.

``ProgressBar`` draws a rich bar (description, bar, done/total, rate, elapsed, ETA, status) when stderr is a
terminal. When it is not (CI, ``nohup``, cluster jobs) it writes a plain line per task instead: when the task
starts, every ``log_every`` seconds, and when it finishes, e.g.

    tokenize: 1,024/8,000 (12.8%) · 512.0/s · elapsed 0:00:02 · ETA 0:00:14
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import (
    Progress as RichProgress,
)
from rich.text import Text

#: ``progress(phase, done, total, metrics=None)``: ``done`` of ``total`` units of ``phase`` finished.
Progress = Callable[..., None]

LOG_EVERY_SECONDS = 5.0


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=int(max(0.0, seconds))))


def _amount(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _rate(speed: float | None) -> str:
    if not speed:
        return "-/s"
    return f"{speed:,.1f}/s" if speed < 100 else f"{speed:,.0f}/s"


class RateColumn(ProgressColumn):
    """Units per second, from rich's recent-speed estimate."""

    def render(self, task) -> Text:
        return Text(_rate(task.finished_speed or task.speed), style="progress.data.speed")


@dataclass
class _LoggedTask:
    description: str
    total: float | None
    status: str = ""
    completed: float = 0.0
    started: float = field(default_factory=time.monotonic)
    baseline: float | None = None     # units already done at the first update (a resumed run's steps)
    last_logged: float | None = None
    finished_logged: bool = False


class ProgressBar:
    """A context manager with rich's ``add_task`` / ``update`` API that logs plain lines off a terminal."""

    def __init__(self, console: Console | None = None, *, transient: bool = False,
                 log_every: float = LOG_EVERY_SECONDS, live: bool | None = None):
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal if live is None else live
        self.log_every = log_every
        self._rich = None
        if self.live:
            self._rich = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
                console=self.console, transient=transient)
        self._tasks: dict[int, _LoggedTask] = {}

    def __enter__(self) -> ProgressBar:
        if self._rich is not None:
            self._rich.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)
        elif exc[0] is None:
            for task in self._tasks.values():
                if not task.finished_logged and task.last_logged is not None:
                    self._log(task, time.monotonic())

    # ---- rich's API ---------------------------------------------------------------------------------------------
    def add_task(self, description: str, total: float | None = None, status: str = "", **_fields) -> int:
        if self._rich is not None:
            return self._rich.add_task(description, total=total, status=status)
        task_id = len(self._tasks)
        self._tasks[task_id] = _LoggedTask(description, total, status)
        return task_id

    def update(self, task_id: int, *, completed: float | None = None, advance: float | None = None,
               total: float | None = None, status: str | None = None, description: str | None = None) -> None:
        if self._rich is not None:
            fields = {} if status is None else {"status": status}
            self._rich.update(task_id, completed=completed, advance=advance, total=total, description=description,
                              **fields)
            return
        task = self._tasks[task_id]
        if completed is not None:
            task.completed = completed
        if advance is not None:
            task.completed += advance
        if total is not None:
            task.total = total
        if status is not None:
            task.status = status
        if description is not None:
            task.description = description
        now = time.monotonic()
        if task.baseline is None:
            task.baseline, task.started = task.completed, now
        finished = task.total is not None and task.completed >= task.total
        due = task.last_logged is None or now - task.last_logged >= self.log_every
        if (finished and not task.finished_logged) or (due and not finished):
            self._log(task, now)
            task.finished_logged = finished

    # ---- the library-facing callback ------------------------------------------------------------------------
    def callback(self, labels: Mapping[str, str] | None = None,
                 status: Callable[[str, Mapping], str] | None = None) -> Progress:
        """A ``Progress`` callback drawing one task per phase; ``labels`` names phases, ``status(phase,
        metrics)`` writes the text after the bar."""
        tasks: dict[str, int] = {}

        def report(phase: str, done: int, total: int | None = None, metrics: Mapping | None = None) -> None:
            if phase not in tasks:
                tasks[phase] = self.add_task((labels or {}).get(phase, phase), total=total, status="")
            text = status(phase, metrics or {}) if status is not None else None
            self.update(tasks[phase], completed=done, total=total, status=text)

        return report

    # ---- plain lines ----------------------------------------------------------------------------------------
    def _log(self, task: _LoggedTask, now: float) -> None:
        task.last_logged = now
        elapsed = now - task.started
        work = task.completed - (task.baseline or 0.0)
        speed = work / elapsed if elapsed > 0 and work > 0 else None
        parts = [_amount(task.completed) + (f"/{_amount(task.total)}" if task.total is not None else "")]
        if task.total:
            parts[0] += f" ({100 * task.completed / task.total:.1f}%)"
        parts.append(_rate(speed))
        parts.append(f"elapsed {_clock(elapsed)}")
        if task.total is not None and speed and task.completed < task.total:
            parts.append(f"ETA {_clock((task.total - task.completed) / speed)}")
        if task.status:
            parts.append(task.status)
        self.console.print(f"{task.description}: " + " · ".join(parts), markup=False, highlight=False,
                           soft_wrap=True)
