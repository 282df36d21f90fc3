"""The README and the documentation site under docs/: every code block runs, and the site builds strictly.

For each file (one test per file, so a failure names it), in a fresh empty folder and in document order:
- every ```python block runs, all blocks of a file in one namespace (what `mktestdocs.check_md_file(path,
  memory=True)` runs; the test checks that mktestdocs finds the same blocks);
- every ```bash block runs: one whose commands are all `vae ...` calls goes through the command's entry point
  (`vae_core.cli.main`) in this process, which saves each call the start-up of torch and TensorFlow; any other runs
  in `bash -euo pipefail` with this interpreter's bin/ first on PATH;
- a ```toml or ```yaml block with a `title="<file name>"` is written to that file, for the blocks after it.

The one marking convention for a block that must not run (it needs a GPU, torchrun with several processes, an
install, a download, or hours): its fence's info string carries a title that starts with "not run:" and says why,
as in ```python title="not run: needs a GPU". The site shows the title above the block. Any other attribute on a
python or bash block, or a language this file does not know, fails the test, so nothing is skipped by accident.
docs/architecture.md states the convention for contributors.

The blocks train on the offline 8x8 digits for an epoch or two: all files together must stay well under 90 s on one
core. `pytest --durations=0 tests/unit/test_docs.py` shows each file's time.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = (README, *sorted((ROOT / "docs").glob("*.md")))
NOT_RUN = "not run:"
RUN = ("python", "bash")  # languages whose blocks run
FILES = ("toml", "yaml")  # languages whose titled blocks are written to a file
SHOWN = ("text",)  # languages that are only shown
SHELL_SYNTAX = re.compile(r"[|&;<>$`(){}*?]")  # a line with any of these is not a plain `vae` call
README_MAX_LINES, README_MAX_BYTES, README_MAX_WIDTH = 250, 24 * 1024, 120


@dataclass(frozen=True)
class Block:
    lang: str
    title: str | None  # the fence's title="..." attribute
    source: str
    line: int  # 1-based line of the opening fence

    @property
    def runs(self) -> bool:
        return self.lang in RUN and self.title is None

    def where(self, page: Path) -> str:
        return f"{page.relative_to(ROOT)}:{self.line}"


def _blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file; fails on a fence this file does not know how to treat."""
    blocks, opening, lines = [], None, []
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if opening is None and line.startswith("```"):
            opening, lines = (number, line[3:].strip()), []
        elif opening is not None and line.strip() == "```":
            blocks.append(_block(page, *opening, "\n".join(lines) + "\n"))
            opening = None
        elif opening is not None:
            assert not line.lstrip().startswith("```"), f"{page.name}:{number}: a fence inside a block"
            lines.append(line)
    assert opening is None, f"{page.name}:{opening[0]}: a code block is never closed"
    return blocks


def _block(page: Path, line: int, info: str, source: str) -> Block:
    where = f"{page.relative_to(ROOT)}:{line}"
    lang, _, attributes = info.partition(" ")
    title = None
    match = re.fullmatch(r'title="([^"]+)"', attributes.strip())
    if attributes.strip():
        assert match, f"{where}: the only fence attribute allowed is title=\"...\"; got {attributes!r}"
        title = match.group(1)
    assert lang in RUN + FILES + SHOWN, (f"{where}: a ```{lang or '(no language)'} block: use one of "
                                         f"{', '.join(RUN + FILES + SHOWN)}, so that the test knows whether it runs")
    if lang in RUN and title is not None:
        reason = title[len(NOT_RUN):].strip() if title.startswith(NOT_RUN) else ""
        assert reason, (f"{where}: a {lang} block's title must be \"{NOT_RUN} <why>\" (it then does not run); "
                        f"got {title!r}")
    if lang in FILES:
        assert title and "/" not in title, f"{where}: a {lang} block needs title=\"<file name>\" to be written to"
    return Block(lang, title, source, line)


def _vae_calls(source: str) -> list[list[str]] | None:
    """The argument lists of a bash block's commands when every one is a plain `vae ...` call, else None."""
    calls = []
    for line in source.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        command = line.split(" #")[0]
        if words[0] != "vae" or SHELL_SYNTAX.search(command):
            return None
        calls.append(words[1:])
    return calls


def _run_bash(block: Block, page: Path, folder: Path) -> None:
    calls = _vae_calls(block.source)
    if calls is None:
        bin_dir = str(Path(sys.executable).parent)
        env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", block.source], cwd=folder, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{block.where(page)}: exit {result.returncode}\n{result.stderr[-3000:]}"
        return
    from vae_core.cli import main

    for argv in calls:
        status = main(argv)
        assert status == 0, f"{block.where(page)}: `vae {shlex.join(argv)}` exited {status} (its stderr is above)"


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_code_block_runs(page, tmp_path, monkeypatch):
    grab_code_blocks = pytest.importorskip("mktestdocs").grab_code_blocks  # the `docs` extra

    blocks = _blocks(page)
    python = [b.source.strip() for b in blocks if b.lang == "python" and b.runs]
    mktestdocs_python = [b.strip() for b in grab_code_blocks(page.read_text(), lang="python")]
    assert python == mktestdocs_python, "mktestdocs and this test disagree on which python blocks run"

    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    for block in blocks:
        if block.lang == "python" and block.runs:
            # Leading newlines put the code on its own line numbers: a traceback names the page and the line.
            exec(compile("\n" * block.line + block.source, str(page), "exec"), namespace)
        elif block.lang == "bash" and block.runs:
            _run_bash(block, page, tmp_path)
        elif block.lang in FILES:
            (tmp_path / block.title).write_text(block.source)


def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocstrings")  # the `docs` extra
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                             "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (tmp_path / "site" / "index.html").is_file()


def test_the_readme_is_a_front_page():
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"
    assert len(text.encode()) <= README_MAX_BYTES, f"README.md is {len(text.encode())} bytes; move detail into docs/"
    wide = [n for n, line in enumerate(lines, 1) if len(line) > README_MAX_WIDTH]
    assert not wide, f"README.md lines over {README_MAX_WIDTH} characters: {wide}"


def test_the_readme_shows_the_command_ci_runs():
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] in README.read_text().splitlines(), f"README.md does not show .ci/run's command {ci[-1]!r}"
