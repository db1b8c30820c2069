"""The project's habits, checked: one version, the licence text, a changelog, a short README, no internal
issue numbers in the code or the documentation."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import gradcam

ROOT = Path(__file__).resolve().parent.parent


def test_the_version_is_written_once():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'version = { attr = "gradcam.__version__" }' in pyproject
    assert not re.search(r'^version\s*=\s*"', pyproject, re.M)
    assert re.fullmatch(r"\d+\.\d+\.\d+", gradcam.__version__)
    out = subprocess.run(
        [sys.executable, "-m", "gradcam", "--version"], capture_output=True, text=True, check=True
    )
    assert gradcam.__version__ in out.stdout + out.stderr


def test_licence_and_changelog():
    licence = (ROOT / "LICENSE").read_text()
    assert licence.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert changelog.startswith("# Changelog") and "keepachangelog.com" in changelog
    assert re.search(r"^## \[(Unreleased|\d+\.\d+\.\d+)\]", changelog, re.M)


def test_the_readme_reads_in_two_minutes():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_no_internal_issue_numbers():
    files = [ROOT / "README.md", *(ROOT / "src").rglob("*.py"), *(ROOT / "docs").rglob("*.md")]
    pattern = re.compile(r"\bissues? \d+\b|(?<![\w/&])#\d+\b", re.I)
    found = [
        f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
        for p in files
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line) and "pytorch-grad-cam" not in line
    ]
    assert not found, "internal issue numbers:\n" + "\n".join(found)


def test_sphinx_roles_become_markdown_code_in_the_api_reference():
    pytest.importorskip("griffe")
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from griffe_sphinx_roles import markdown
    finally:
        sys.path.remove(str(ROOT / "tools"))
    text = ":func:`capture` of :class:`~gradcam.explanation.Explanation`, ``x = 1``, :mod:`gradcam.targets`"
    assert markdown(text) == "`capture` of `Explanation`, `x = 1`, `gradcam.targets`"
