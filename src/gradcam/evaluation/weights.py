"""Committed weights of the benchmarks' small trained networks: checksum-verified files in ``gradcam/data``,
else a cache, else trained now (deterministically) and cached. Used by the 2-D synthetic CNNs
(:mod:`.synthetic`) and the 3-D lesion CNN (:mod:`.volumes`)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import torch
from torch import nn


def config_key(cfg: Any) -> str:
    """The 12-hex-digit key of every setting of the dataclass ``cfg`` that changes the weights (part of the
    file names): the first 12 hex digits of SHA-256(JSON of the settings, keys sorted)."""
    return hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:12]


def committed_file(name: str, directory: Path, checksums: Path) -> Optional[Path]:
    """``directory / name`` after checking its SHA-256 against ``checksums`` (a JSON file name -> digest);
    ``None`` when none is committed. A file whose checksum does not match raises (a damaged or edited file is
    never used)."""
    sums = json.loads(checksums.read_text()) if checksums.exists() else {}
    path = directory / name
    if name not in sums or not path.exists():
        return None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sums[name]:
        raise ValueError(
            f"{path} has SHA-256 {digest}, expected {sums[name]} ({checksums.name}): the committed weights "
            "are damaged. Reinstall gradcam, or pass retrain=True (gradcam evaluate --retrain) to train new ones."
        )
    return path


def load_or_train(
    net: nn.Module,
    cfg: Any,
    committed: Optional[Path],
    cache_path: Path,
    train: Callable[[], Tuple[nn.Module, Dict]],
    log: Callable[[str], None],
    what: str,
) -> Tuple[nn.Module, Dict]:
    """``net`` with the ``committed`` weights when given, else those cached at ``cache_path``, else trained now
    (``train()``) and cached there (written whole, then renamed); in eval mode, with the training's record
    (and where the weights came from: ``committed`` or ``cached``)."""
    source = committed if committed is not None else (cache_path if cache_path.exists() else None)
    if source is not None:
        blob = torch.load(source, map_location="cpu", weights_only=True)
        net.load_state_dict(blob["state_dict"])
        net.eval()
        where = {"committed": source.name} if committed is not None else {"cached": str(cache_path)}
        return net, dict(blob["info"], **where)
    log(f"training {what} (cached afterwards in {cache_path}) ...")
    net, info = train()
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_path.with_suffix(".tmp")
    torch.save({"state_dict": net.state_dict(), "info": info, "config": asdict(cfg)}, tmp)
    os.replace(tmp, cache_path)
    return net, dict(info, cached=str(cache_path))
