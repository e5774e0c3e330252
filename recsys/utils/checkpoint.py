"""Safe serialisation of weights, optimiser state and metadata.

Files are safetensors (tensors plus a JSON metadata header): loading them never executes code,
unlike pickle. Writes are atomic (temporary file, fsync, rename).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from recsys.errors import ModelFileError
from recsys.utils.io import atomic_write_bytes, loads_bounded, read_bytes_bounded

META_KEY = "recsys"


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write ``tensors`` and JSON-able ``meta`` to one safetensors file, atomically."""
    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    blob = st_save(clean, metadata={META_KEY: json.dumps(meta)})
    atomic_write_bytes(path, blob)


def load_tensors(
    path: str | Path, *, inside: str | Path | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by :func:`save_tensors`; a damaged or foreign file is a ModelFileError.

    Only a regular file is read (a FIFO, a device or a folder is refused before reading; with
    ``inside``, so is a path that resolves outside that folder), and the JSON metadata is parsed
    with bounded nesting (:func:`recsys.utils.io.loads_bounded`)."""
    path = Path(path)
    data = read_bytes_bounded(path, "file", None, inside=inside)
    header_len = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not (0 < header_len <= len(data) - 8 and data[8:9] == b"{"):
        if data[:1] == b"\x80" or data[:2] == b"PK":  # pickle protocol 2+ / torch.save zip archives
            raise ModelFileError(
                f"{path}: looks like a pickle/zip file; refusing to load it (only safetensors)"
            )
        raise ModelFileError(f"{path}: not a safetensors file (truncated or damaged)")
    try:
        tensors = st_load(data)
        header = json.loads(data[8 : 8 + header_len])  # already parsed (depth-checked) by st_load
        text = (header.get("__metadata__") or {}).get(META_KEY, "{}")
    except (
        SafetensorError,
        ValueError,
        json.JSONDecodeError,
        OSError,
        RecursionError,
        AttributeError,
    ) as exc:
        raise ModelFileError(f"{path}: not a readable safetensors file ({str(exc)[:200]})") from None
    if not isinstance(text, str):
        raise ModelFileError(f"{path}: not a readable safetensors file (metadata is not text)")
    meta = loads_bounded(text, f"{path} (metadata)")
    return tensors, meta


def flatten_optimizer(state: dict[str, Any], prefix: str = "optim") -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser ``state_dict`` into tensors and a JSON-able remainder."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer(
    tensors: dict[str, torch.Tensor], meta: dict, prefix: str = "optim"
) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith(prefix + "."):
            continue
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = value
    for idx, entry in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}
