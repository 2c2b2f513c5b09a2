"""Fixtures of the network file-system tests (see sshfs_mount.py)."""

from sshfs_mount import sshfs_pair

__all__ = ["sshfs_pair"]
