"""The environment a task runs with: the worker's own, minus its secrets.

A task is code posted through the shared folder, and its stdout/stderr tails are published to
every reader of that folder. So the worker's credentials must not leak into it: drivemr's own
settings, and the variables through which the common clouds, code hosts and package
registries take their tokens. The deny-list below is documented in docs/security.md; a job
sets what it needs in its own ``env``, and an operator passes a denied variable on purpose
with ``drivemr worker --pass-env NAME`` (repeatable).

Matching is on the upper-cased name, so ``aws_secret_access_key`` on Windows (whose
environment is case-insensitive) is caught too.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping

__all__ = ["DENIED_ENV", "Redactor", "denied", "task_base_env"]

DENIED_ENV: tuple[str, ...] = (
    # drivemr's own settings and sign-ins
    "DRIVEMR_*",
    "GOOGLE_APPLICATION_CREDENTIALS",
    # clouds
    "AWS_*",
    "AZURE_*",
    "ARM_CLIENT_SECRET",
    "GOOGLE_*",
    "GCLOUD_*",
    "CLOUDSDK_*",
    "DIGITALOCEAN_*",
    "HCLOUD_TOKEN",
    "LINODE_*",
    "OS_PASSWORD",
    "B2_*",
    "R2_*",
    "MINIO_*",
    "CLOUDFLARE_*",
    # code hosts, CI and registries
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "GH_ENTERPRISE_TOKEN",
    "GITLAB_*",
    "CI_JOB_TOKEN",
    "BITBUCKET_*",
    "NPM_TOKEN",
    "NODE_AUTH_TOKEN",
    "PYPI_*",
    "TWINE_*",
    "DOCKER_AUTH_CONFIG",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    # agents and config files that stand for credentials
    "SSH_AUTH_SOCK",
    "GPG_AGENT_INFO",
    "KUBECONFIG",
    "VAULT_*",
    # anything that says what it is
    "*_TOKEN",
    "*_SECRET",
    "*_SECRET_KEY",
    "*_PASSWORD",
    "*_PASSWD",
    "*_API_KEY",
    "*_APIKEY",
    "*_ACCESS_KEY",
    "*_ACCESS_KEY_ID",
    "*_PRIVATE_KEY",
    "*_CREDENTIALS",
)
"""Variables a task never inherits from its worker (shell-style patterns, upper case)."""


def denied(name: str, *, passed: Iterable[str] = ()) -> bool:
    """True if ``name`` is on the deny-list and was not passed on purpose."""
    upper = name.upper()
    if upper in {p.upper() for p in passed}:
        return False
    return any(fnmatch.fnmatchcase(upper, pattern) for pattern in DENIED_ENV)


def task_base_env(environ: Mapping[str, str], *, passed: Iterable[str] = ()) -> dict[str, str]:
    """The worker's environment minus the deny-list (computed once per worker)."""
    keep = {p.upper() for p in passed}
    return {
        k: v
        for k, v in environ.items()
        if k.upper() in keep or not any(fnmatch.fnmatchcase(k.upper(), p) for p in DENIED_ENV)
    }


MIN_REDACTED_LENGTH = 8
"""Values shorter than this are not redacted (``1``, ``true``, ``eu-west-1`` would mangle
every tail, and are not secrets)."""


class Redactor:
    """Replaces the values of the worker's denied variables in text a task printed.

    A task does not get those variables, but it may still find a secret elsewhere (a file it
    can read, a credential helper) and print it; its stdout/stderr tails are published to
    every reader of the store. So the tails are scrubbed of every denied value the worker
    holds (at least :data:`MIN_REDACTED_LENGTH` characters long) before they are uploaded.
    """

    def __init__(self, environ: Mapping[str, str], *, passed: Iterable[str] = ()) -> None:
        passed = tuple(passed)
        values: dict[str, str] = {}
        for name, value in environ.items():
            if len(value) >= MIN_REDACTED_LENGTH and denied(name, passed=passed):
                values.setdefault(value, name)
        self._names = values
        # Longest first, so a value that contains another is replaced whole.
        ordered = sorted(values, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(lambda m: f"[redacted ${self._names[m.group(0)]}]", text)
