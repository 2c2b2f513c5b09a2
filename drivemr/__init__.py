"""drivemr: a few PCs and one shared folder (or one Google Drive folder) as a MapReduce cluster.

``drivemr.Client`` is the Python API (see docs/python-api.md); ``drivemr.TaskManager`` the
seed's local task manager.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Client", "DrivemrError", "Job", "MapError", "TaskManager", "__version__"]

if TYPE_CHECKING:
    from drivemr.api import Client, Job
    from drivemr.errors import DrivemrError, MapError
    from drivemr.taskmanager import TaskManager

_LAZY = {
    "Client": "drivemr.api",
    "Job": "drivemr.api",
    "DrivemrError": "drivemr.errors",
    "MapError": "drivemr.errors",
    "TaskManager": "drivemr.taskmanager",
}


def __getattr__(name: str) -> Any:
    # Imported lazily so `import drivemr.stores` stays cheap for tools and child processes.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module), name)
