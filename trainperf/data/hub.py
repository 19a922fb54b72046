"""Downloads from the Hugging Face Hub for llama2_70b_lora: the GovReport files and Llama-2-70B.

Both go through ``huggingface_hub.snapshot_download`` into a plain folder (``local_dir``): files
are fetched in parallel with progress bars, an interrupted download resumes from its partial file
on the next call, and files already complete are not fetched again. The token comes from the
``token`` argument or ``HF_TOKEN`` (Llama 2 is gated: accept its licence on the Hub first); it is
never printed. Errors become one ``ValueError`` line that names the repository and the fix.
"""

from __future__ import annotations

import shutil
from pathlib import Path

GOVREPORT_REPO = "regisss/scrolls_gov_report_preprocessed_mlperf_2"
LLAMA2_70B_REPO = "meta-llama/Llama-2-70b-hf"
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
SPLITS = ("train", "validation")


def _snapshot(
    repo_id: str,
    dest: Path,
    *,
    repo_type: str,
    allow_patterns: list[str] | None,
    revision: str | None,
    token: str | None,
    endpoint: str | None,
    progress: bool,
) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    dest.mkdir(parents=True, exist_ok=True)
    url = f"https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"
    (enable_progress_bars if progress else disable_progress_bars)()
    try:
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
    except GatedRepoError:
        raise ValueError(
            f"access to {repo_id} was refused (gated repository): accept its licence on {url} "
            "and set HF_TOKEN to a token of that account, then rerun (the download resumes)"
        ) from None
    except RepositoryNotFoundError:
        raise ValueError(
            f"{repo_id} was not found or access was refused (HTTP 401/404): check the name, "
            f"request access on {url} and set HF_TOKEN, then rerun"
        ) from None
    except RevisionNotFoundError:
        raise ValueError(f"revision {revision!r} of {repo_id} does not exist") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        hint = "set HF_TOKEN with access to it" if status in (401, 403) else "rerun later"
        raise ValueError(f"the Hub refused {repo_id} (HTTP {status}): {hint}") from None
    except Exception as exc:
        if not isinstance(exc, LocalEntryNotFoundError | OSError) and not _network_error(exc):
            raise
        raise ValueError(
            f"download of {repo_id} into {dest} failed ({type(exc).__name__}: "
            f"{_short(exc)}); check the network (HF_ENDPOINT, proxies) and rerun: finished "
            "files are kept and partial ones resume"
        ) from None
    finally:
        enable_progress_bars()


def _network_error(exc: Exception) -> bool:
    """An error of the HTTP client huggingface_hub uses (httpx, httpx2 or requests/urllib3)."""
    return type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "requests", "urllib3")


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else "no detail"


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

    The hub dataset keeps them under ``data/`` with its own names; they are moved into the
    layout the MLPerf reference reads (``scrolls_gov_report_8k/``).
    """
    dest = Path(dest)
    snapshot = _snapshot(
        repo_id,
        dest / ".hub",
        repo_type="dataset",
        allow_patterns=["*.parquet"],
        revision=revision,
        token=token,
        endpoint=endpoint,
        progress=progress,
    )
    for split in SPLITS:
        found = sorted(snapshot.rglob(f"{split}*.parquet"))
        if len(found) != 1:
            raise ValueError(
                f"{repo_id} should hold one {split} parquet file, found {len(found)} "
                f"({[p.name for p in found]}); is it the MLPerf GovReport dataset?"
            )
        shutil.copyfile(found[0], dest / f".{split}.tmp")
        (dest / f".{split}.tmp").replace(dest / f"{split}-00000-of-00001.parquet")
    return dest


def download_model(
    dest: Path,
    *,
    repo_id: str = LLAMA2_70B_REPO,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    progress: bool = True,
) -> Path:
    """An HF Llama checkpoint (config, safetensors shards and index, tokenizer) into ``dest``."""
    return _snapshot(
        repo_id,
        Path(dest),
        repo_type="model",
        allow_patterns=MODEL_PATTERNS,
        revision=revision,
        token=token,
        endpoint=endpoint,
        progress=progress,
    )
