"""Volumes among the paths of a run: NIfTI and ``.npy`` files, and folders of DICOM slices (one item each)."""

from __future__ import annotations

import os
from typing import List, Sequence, Tuple

from .volume import DICOM_SUFFIXES, NIFTI_SUFFIXES, NUMPY_SUFFIXES, volume_kind

FILE_SUFFIXES = NIFTI_SUFFIXES + NUMPY_SUFFIXES + DICOM_SUFFIXES


def _stem(rel: str) -> str:
    low = rel.lower()
    for suf in (".nii.gz",) + FILE_SUFFIXES:
        if low.endswith(suf):
            return rel[: -len(suf)]
    return rel


def _is_series(folder: str, files: Sequence[str]) -> bool:
    return any(f.lower().endswith(DICOM_SUFFIXES) and not f.startswith(".") for f in files)


def split_volumes(
    paths: Sequence[str], exclude: Sequence[str] = ()
) -> Tuple[List[Tuple[str, str]], List[str]]:
    """``(volumes, rest)``: the volumes among ``paths`` as ``(path, output stem)``, and the paths left for the
    photo search.

    A volume file given directly (``.nii``, ``.nii.gz``, ``.npy``, ``.dcm``) or a folder holding ``.dcm``
    files is one volume (a DICOM folder is one series; its stem is the folder's name). Other folders are
    searched recursively (sorted, hidden names and ``exclude`` skipped) for NIfTI and ``.npy`` files and for
    DICOM folders (stem: the path relative to the searched folder); they stay in ``rest`` for their photos.
    """
    skip = {os.path.realpath(e) for e in exclude}
    vols: List[Tuple[str, str]] = []
    rest: List[str] = []
    for p in map(os.fspath, paths):
        if os.path.isdir(p) and volume_kind(p) == "dicom":
            vols.append((p, os.path.basename(os.path.normpath(p)) or "series"))
        elif os.path.isdir(p):
            rest.append(p)
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(
                    d
                    for d in dirs
                    if not d.startswith(".") and os.path.realpath(os.path.join(root, d)) not in skip
                )
                if os.path.realpath(root) in skip:
                    dirs[:] = []
                    continue
                rel = os.path.relpath(root, p)
                if root != p and _is_series(root, files):
                    vols.append((root, rel))
                    dirs[:] = []
                    continue
                for f in sorted(files):
                    if not f.startswith(".") and f.lower().endswith(NIFTI_SUFFIXES + NUMPY_SUFFIXES):
                        vols.append((os.path.join(root, f), _stem(os.path.normpath(os.path.join(rel, f)))))
        elif p.lower().endswith(FILE_SUFFIXES) and os.path.lexists(p):
            vols.append((p, _stem(os.path.basename(p))))
        else:
            rest.append(p)
    return vols, rest
