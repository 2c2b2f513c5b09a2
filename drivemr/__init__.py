"""drivemr: a few PCs and one shared folder (or one Google Drive folder) as a MapReduce cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["TaskManager", "__version__"]

if TYPE_CHECKING:
    from drivemr.taskmanager import TaskManager


def __getattr__(name: str) -> Any:
    # Imported lazily so `import drivemr.stores` stays cheap for tools and child processes.
    if name == "TaskManager":
        from drivemr.taskmanager import TaskManager

        return TaskManager
    raise AttributeError(name)
