"""Every case of tests/cli/bad_inputs.py: the expected error type, a message that names the problem and the fix,
exit status 2 with one line from the CLI, and nothing written or lost. Also checks docs/bad_inputs.md is current."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from vae_core.cli import main

from tests.cli.bad_inputs import CASES, Case

ROOT = Path(__file__).resolve().parents[2]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder` with a hash of its content: to show nothing was written or lost."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def trigger(case: Case, tmp: Path, capsys) -> str:
    """Run the case; return the one-line message it produced (asserting type, status and line count)."""
    action = case.prepare(tmp)
    before = snapshot(tmp)
    if case.where == "python":
        with pytest.raises(case.error) as err:
            action()
        assert type(err.value) is case.error or case.error is OSError, type(err.value)
        message = str(err.value)
    else:
        capsys.readouterr()
        try:
            status = main(action)
        except SystemExit as e:  # argparse's own errors
            status = e.code
        assert status == 2
        out = capsys.readouterr()
        lines = out.err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in out.err, out.err
        message = lines[0]
    assert snapshot(tmp) == before, "the failing call wrote, changed or removed files"
    return message


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, capsys):
    message = trigger(case, tmp_path, capsys)
    assert re.search(case.match, message), f"{message!r} does not match {case.match!r}"


def test_catalogue_covers_the_issue():
    assert len(CASES) >= 20
    assert {c.where for c in CASES} == {"python", "cli"}
    from vae_core import TrainConfig, VAESpec
    from dataclasses import fields

    ids = {c.id for c in CASES}
    for cls, prefix in ((VAESpec, "spec"), (TrainConfig, "config")):
        missing = [f.name for f in fields(cls) if f"{prefix}-{f.name}" not in ids]
        assert not missing, f"no bad-input case for {cls.__name__} fields {missing}"


def test_pickle_case_never_unpickles(tmp_path, capsys):
    for case in (c for c in CASES if "pickle" in c.id):
        folder = tmp_path / case.id
        folder.mkdir()
        trigger(case, folder, capsys)
        assert not (tmp_path / f"{case.id}-UNPICKLED").exists()


def test_docs_table_is_generated_from_these_cases():
    from scripts.make_bad_inputs_table import TABLE, render

    committed = TABLE.read_text()
    assert [line.split("|")[1:4] for line in committed.splitlines() if line.startswith("| `")] == \
           [[f" `{c.id}` ", f" {c.where} ", f" {c.given} "] for c in CASES], \
        "docs/bad_inputs.md is stale: run .venv/bin/python -m scripts.make_bad_inputs_table"
    assert render.__doc__
