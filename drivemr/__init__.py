"""drivemr: a few PCs and one shared folder (or one Google Drive folder) as a MapReduce cluster."""

from drivemr.taskmanager import TaskManager

__version__ = "0.1.0"

__all__ = ["TaskManager", "__version__"]
