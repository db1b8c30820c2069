"""Every command output quoted in README.md and docs/ is what the command prints today (tests/doc_outputs.py)."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from doc_outputs import ROOT, blocks, doc_files, run

QUOTED = [(path, cmd, body) for path in doc_files() for cmd, body in blocks(path.read_text(encoding="utf-8"))]


@pytest.fixture(scope="module")
def printed():
    """What each quoted command prints, the commands run side by side (each is a separate process)."""
    commands = sorted({cmd for _, cmd, _ in QUOTED})
    with ThreadPoolExecutor(max_workers=len(commands) or 1) as pool:
        return dict(zip(commands, pool.map(run, commands)))


def test_the_quick_start_output_is_quoted():
    readme = [cmd for path, cmd, _ in QUOTED if path.name == "README.md"]
    assert readme == ["gradcam explain --demo"]
    assert len({cmd for _, cmd, _ in QUOTED}) <= 4, "keep the quoted outputs few: each one runs the program"


@pytest.mark.parametrize("path,cmd,body", QUOTED, ids=[f"{p.relative_to(ROOT)}:{c}" for p, c, _ in QUOTED])
def test_quoted_output_matches_the_program(path, cmd, body, printed):
    assert body == printed[cmd], (
        f"{path.relative_to(ROOT)}: the output quoted for `{cmd}` differs from what the program prints; "
        "run `python tests/doc_outputs.py --update` and review the diff"
    )
