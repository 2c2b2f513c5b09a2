"""Test doubles shipped with drivemr: the fake Drive (``fakedrive``) and ``MemoryStore``."""

from drivemr.testing.memory import MemoryStore

__all__ = ["MemoryStore"]
