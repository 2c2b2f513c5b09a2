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
from collections.abc import Iterable, Mapping

__all__ = ["DENIED_ENV", "denied", "task_base_env"]

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
