"""The security tests run some attacks on the Drive store too: its fixtures, shared."""

from drive.conftest import drive_env, drive_root, drive_store, fake_drive, make_drive_store

__all__ = ["drive_env", "drive_root", "drive_store", "fake_drive", "make_drive_store"]
