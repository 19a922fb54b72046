"""Downloads from the Hugging Face Hub for llama2_70b_lora: the GovReport files and Llama-2-70B.

Both go through ``huggingface_hub.snapshot_download`` into a plain folder (``local_dir``), with
its progress bars. Resuming, as huggingface_hub 2.x does it: a connection dropped mid-file is
retried from the byte where it stopped (HTTP Range, up to 5 times); files already complete are
kept, and a rerun fetches only what is missing. A file cut off when the process dies is not kept:
the next run fetches that one file again from its start.

The token is the ``token`` argument, else what huggingface_hub finds itself (``HF_TOKEN``, then
the token saved by ``hf auth login``). Llama 2 is gated: accept its licence on the Hub first. The
token is never printed. ``HF_ENDPOINT`` is honoured (huggingface_hub reads it at import time into
``huggingface_hub.constants.ENDPOINT``); ``endpoint=`` overrides it. Errors become one
``ValueError`` line that names the repository, the endpoint and the fix.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

from trainperf.atomic import atomic_path

GOVREPORT_REPO = "regisss/scrolls_gov_report_preprocessed_mlperf_2"
LLAMA2_70B_REPO = "meta-llama/Llama-2-70b-hf"
# The hub dataset keeps data/{train,validation}-00000-of-00001.parquet beside a README
# (training_results_v4.0 NVIDIA/.../llama2_70b_lora/.../scripts/download_dataset.py moves data/*
# up and deletes README.md); the MLPerf reference reads both files from one folder.
GOVREPORT_FILES = {s: f"{s}-00000-of-00001.parquet" for s in ("train", "validation")}
HUB_SUBDIR = ".hub"  # the snapshot inside the dataset folder, so reruns only check for updates
MODEL_PATTERNS = [
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
]


def _endpoint(endpoint: str | None) -> str:
    from huggingface_hub import constants

    return (endpoint or constants.ENDPOINT).rstrip("/")


def _repo_url(endpoint: str, repo_id: str, repo_type: str) -> str:
    return f"{endpoint}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"


@contextmanager
def _progress_bars(enabled: bool):
    """Turn huggingface_hub's progress bars off for the block when ``enabled`` is False."""
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    turn_off = not enabled and not are_progress_bars_disabled()
    if turn_off:
        disable_progress_bars()
    try:
        yield
    finally:
        if turn_off:
            enable_progress_bars()


def _response(exc: BaseException):
    """The HTTP response behind ``exc``, if any (huggingface_hub wraps some errors in others)."""
    from huggingface_hub.errors import HfHubHTTPError

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, HfHubHTTPError) and exc.response is not None:
            return exc.response
        exc = exc.__cause__ or exc.__context__
    return None


def _sent_token(response) -> bool:
    try:
        return response is not None and "authorization" in response.request.headers
    except RuntimeError:  # a response built without its request
        return False


def _error(
    exc: Exception, repo_id: str, repo_type: str, endpoint: str, revision: str | None
) -> str:
    """One line for the user: what failed and the fix, never the token."""
    from huggingface_hub.errors import (
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    url, response = _repo_url(endpoint, repo_id, repo_type), _response(exc)
    status = response.status_code if response is not None else None
    who = "the token sent has no access" if _sent_token(response) else "no token was sent"
    if isinstance(exc, GatedRepoError) or status == 403:
        return (
            f"access to {repo_id} was refused (HTTP {status or '?'}; {who}): accept the licence "
            f"on {url} "
            "and set HF_TOKEN=<a read token of that account>, then rerun"
        )
    if status == 401:
        return (
            f"{repo_id} is gated, private or missing (HTTP 401; {who}): check the name, accept "
            f"the licence on {url} and set HF_TOKEN=<a read token of that account>, then rerun"
        )
    if isinstance(exc, RevisionNotFoundError):
        return f"{repo_id} has no revision {revision!r} on {endpoint}; pass an existing one"
    if isinstance(exc, RepositoryNotFoundError):
        return f"{repo_id} was not found on {endpoint} (HTTP {status}); check the name"
    detail = str(exc).splitlines()[0][:200] if str(exc) else "no detail"
    what = f"HTTP {status}" if status else type(exc).__name__
    return (
        f"download of {repo_id} from {endpoint} failed ({what}: {detail}); check the network, "
        "HF_ENDPOINT and proxy settings, then rerun: it resumes, keeping the files already "
        "complete"
    )


def _snapshot(
    repo_id: str,
    dest: Path,
    *,
    repo_type: str,
    allow_patterns: list[str],
    revision: str | None,
    token: str | None,
    endpoint: str | None,
    progress: bool,
) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    endpoint = _endpoint(endpoint)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with _progress_bars(progress):
            return Path(
                snapshot_download(
                    repo_id,
                    repo_type=repo_type,
                    revision=revision,
                    local_dir=dest,
                    allow_patterns=allow_patterns,
                    token=token,
                    endpoint=endpoint,
                )
            )
    except Exception as exc:
        # HfHubHTTPError, OSError (LocalEntryNotFoundError is one) and the HTTP client's own
        # errors (httpx2: proxy errors, retries exhausted mid-file); anything else is a bug.
        client = type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore")
        if not (isinstance(exc, HfHubHTTPError | OSError) or client):
            raise
        message = _error(exc, repo_id, repo_type, endpoint, revision)
        for secret in (token, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")):
            message = message.replace(secret, "***") if secret else message
        raise ValueError(message) from None


def _incomplete(repo_id: str, dest: Path, missing: str) -> ValueError:
    return ValueError(
        f"the download of {repo_id} into {dest} is incomplete (missing {missing}); rerun with "
        "network access to finish it"
    )


def download_govreport(
    dest: Path,
    *,
    repo_id: str = GOVREPORT_REPO,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    progress: bool = True,
) -> Path:
    """The GovReport parquet files as ``dest/{train,validation}-00000-of-00001.parquet``.

    The hub snapshot stays in ``dest/.hub`` (so a rerun only asks the Hub whether anything
    changed); the files at ``dest`` are hard links to it (a copy where links are not supported).
    Returns ``dest``.
    """
    dest = Path(dest)
    snapshot = _snapshot(
        repo_id,
        dest / HUB_SUBDIR,
        repo_type="dataset",
        allow_patterns=["*.parquet"],
        revision=revision,
        token=token,
        endpoint=endpoint,
        progress=progress,
    )
    for split, name in GOVREPORT_FILES.items():
        found = [
            p
            for p in sorted(snapshot.rglob(f"{split}-*.parquet"))
            if not any(part.startswith(".") for part in p.relative_to(snapshot).parts)
        ]
        if not found:
            raise _incomplete(repo_id, snapshot, f"a {split} parquet file")
        if len(found) > 1:
            raise ValueError(
                f"{repo_id} holds {len(found)} {split} parquet files "
                f"({[str(p.relative_to(snapshot)) for p in found]}); is it the MLPerf GovReport "
                "dataset? pass its repo_id or a revision that has one file per split"
            )
        _link_or_copy(found[0], dest / name)
    return dest


def _link_or_copy(src: Path, dst: Path) -> None:
    """Put ``src`` at ``dst`` atomically, as a hard link when the filesystem allows it."""
    import shutil

    if dst.exists() and os.path.samefile(src, dst):
        return
    with atomic_path(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError:  # no hard links here (some network filesystems): a copy does the same
            shutil.copyfile(src, tmp)


def download_model(
    dest: Path,
    *,
    repo_id: str = LLAMA2_70B_REPO,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    progress: bool = True,
) -> Path:
    """An HF Llama checkpoint into ``dest``: config, safetensors shards and their index,
    tokenizer (no ``.bin``/``.pth`` duplicates). Returns ``dest``; ValueError if the snapshot
    lacks a shard its index names, or holds no safetensors weights."""
    dest = Path(dest)
    _snapshot(
        repo_id,
        dest,
        repo_type="model",
        allow_patterns=MODEL_PATTERNS,
        revision=revision,
        token=token,
        endpoint=endpoint,
        progress=progress,
    )
    if not (dest / "config.json").is_file():
        raise _incomplete(repo_id, dest, "config.json")
    index = dest / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        if missing := [s for s in shards if not (dest / s).is_file()]:
            raise _incomplete(
                repo_id, dest, f"{len(missing)} of {len(shards)} shards: {missing[0]}"
            )
    elif not any(dest.glob("*.safetensors")):
        raise ValueError(
            f"{repo_id} has no .safetensors weights (trainperf reads safetensors only); "
            "use a repository that provides them"
        )
    return dest


TOKENIZER_PATTERNS = ["tokenizer*", "special_tokens_map.json", "config.json"]


def download_tokenizer(
    dest: Path,
    *,
    repo_id: str,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    progress: bool = True,
) -> Path:
    """The tokenizer files of an HF model repository (no weights) into ``dest``."""
    dest = Path(dest)
    _snapshot(
        repo_id,
        dest,
        repo_type="model",
        allow_patterns=TOKENIZER_PATTERNS,
        revision=revision,
        token=token,
        endpoint=endpoint,
        progress=progress,
    )
    if not (dest / "tokenizer.json").is_file():
        raise _incomplete(repo_id, dest, "tokenizer.json")
    return dest
