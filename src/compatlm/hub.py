"""Local path or hub id, and never waiting on an unreachable hub.

A model spec part (``base`` or ``adapter``) is either a local directory or a Hugging Face hub
id. Handing a mistyped local path to ``from_pretrained`` makes it a hub lookup: with no network
that is half a minute of retries before a message about connectivity that never names the typo.
So :func:`looks_like_path` decides up front, and a path-like name that does not exist is an
error naming it (:func:`missing_path_message`).

For real hub ids, :func:`hub_kwargs` returns ``local_files_only=True`` when offline mode was
requested (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``) or the hub does not answer one quick
probe (once per process): the model then loads from the local cache or fails at once.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

log = logging.getLogger(__name__)

# Names ending like a file are paths: no hub repository id is written that way in practice.
PATH_SUFFIXES = (
    ".json",
    ".jsonl",
    ".yaml",
    ".yml",
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".gguf",
    ".onnx",
    ".tar",
    ".gz",
    ".zip",
)
PROBE_TIMEOUT_S = 3.0
_TRUE = {"1", "on", "yes", "true"}


def _is_repo_id(name: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def looks_like_path(name: str) -> bool:
    """True when ``name`` must be a local path: it exists, starts with ``.``, ``/`` or ``~``,
    ends in a file suffix, cannot be a hub id (``a/b/c``), or contains a separator after a
    directory that exists here (``runs/typo`` while ``runs/`` exists)."""
    if os.path.exists(name) or name.startswith((".", "/", "~")):
        return True
    if name.lower().endswith(PATH_SUFFIXES):
        return True
    seps = [s for s in (os.sep, os.altsep) if s]
    if any(s in name for s in seps):
        if not _is_repo_id(name):
            return True
        parent = os.path.dirname(name.rstrip(os.sep))
        return bool(parent) and os.path.isdir(os.path.expanduser(parent))
    return False


def missing_path_message(name: str) -> str:
    """Why ``name`` (path-like, absent) was read as a path, for the one-line error."""
    if name.startswith((".", "/", "~")) or name.lower().endswith(PATH_SUFFIXES):
        return "path does not exist"
    parent = os.path.dirname(name.rstrip(os.sep))
    if parent and os.path.isdir(os.path.expanduser(parent)):
        return (
            f"path does not exist (read as a local path because the directory {parent}/ exists;"
            " a hub id would have to be run from elsewhere)"
        )
    return "path does not exist (not a valid hub id either)"


def offline_requested() -> bool:
    """``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` set now, or when huggingface_hub loaded."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - a transformers dependency
        return False
    return bool(constants.HF_HUB_OFFLINE)


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


@functools.lru_cache(maxsize=4)
def hub_reachable(endpoint: str) -> bool:
    """One HEAD request with a short timeout (huggingface_hub's own client, so proxies and
    certificates are configured as for downloads); any HTTP answer counts as reachable."""
    from huggingface_hub.utils import get_session

    try:
        get_session().head(endpoint, timeout=PROBE_TIMEOUT_S)
    except Exception as err:  # the HTTP client raises many transport error types
        log.debug("hub %s unreachable (%s): loading from the local cache only", endpoint, err)
        return False
    return True


def offline_reason() -> str | None:
    """Why hub files must come from the local cache (a phrase for messages), or None."""
    if offline_requested():
        return "HF_HUB_OFFLINE is set"
    endpoint = hub_endpoint()
    if not hub_reachable(endpoint):
        return f"{endpoint} is unreachable"
    return None


def hub_kwargs(name: str) -> dict[str, Any]:
    """Extra ``from_pretrained`` arguments for ``name``: ``local_files_only=True`` for a hub id
    while offline (so nothing retries for half a minute), nothing for local paths."""
    if looks_like_path(name):
        return {}
    return {"local_files_only": True} if offline_reason() is not None else {}


def not_cached_message(name: str) -> str | None:
    """The error text for a hub id that failed to load while offline, else None."""
    if looks_like_path(name):
        return None
    reason = offline_reason()
    if reason is None:
        return None
    return (
        f"not a local path and not in the Hugging Face cache, and {reason};"
        " download it first or give a local directory"
    )
