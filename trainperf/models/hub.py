"""Where a checkpoint comes from: a local folder, or a Hugging Face hub id downloaded through
huggingface_hub (HF_TOKEN for gated repos, HF_HUB_OFFLINE and the cache honoured)."""

from __future__ import annotations

import os
import re
from pathlib import Path

HUB_PATTERNS = [
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "tokenizer*",
    "special_tokens_map.json",
]


def resolve_checkpoint(source: str | Path) -> Path:
    """A local checkpoint directory, or a hub id ("meta-llama/Llama-3.1-8B") downloaded (config,
    safetensors, tokenizer files only) into the huggingface_hub cache.

    HF_TOKEN authenticates gated repos; HF_HUB_OFFLINE=1 uses the cache only.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    text = str(source)
    if path.exists() or not re.fullmatch(r"[\w.-]+/[\w.-]+", text) or text.startswith("."):
        raise ValueError(f"checkpoint {text} is not a directory nor a hub id like 'org/name'")
    import huggingface_hub
    from huggingface_hub import errors

    try:
        folder = huggingface_hub.snapshot_download(
            repo_id=text, allow_patterns=HUB_PATTERNS, token=os.environ.get("HF_TOKEN") or None
        )
    except errors.GatedRepoError:
        raise ValueError(_access_message(text)) from None
    except errors.RepositoryNotFoundError:
        raise ValueError(
            f"hub repo {text} not found (or private): check the id, or set HF_TOKEN to a token "
            "with access"
        ) from None
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled):
        raise ValueError(
            f"{text} is not in the Hugging Face cache and cannot be downloaded (HF_HUB_OFFLINE "
            "is set or the hub is unreachable); download it once online or pass a local directory"
        ) from None
    except errors.HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            raise ValueError(_access_message(text)) from None
        raise ValueError(f"downloading {text} from the hub failed (HTTP {status})") from None
    return Path(folder)


def _access_message(repo: str) -> str:
    return (
        f"access to hub repo {repo} was refused: it is gated; accept its license on "
        f"huggingface.co/{repo} and set HF_TOKEN to a token that has accepted the license"
    )
