"""The help says which backends each backend-dependent option applies to, and the backends agree.

`vae_core.cli.backend_options.APPLIES` is the one table: the help's "(backends: ...)" suffix is generated from it,
and here each entry runs on every backend of the registry (`vae_core.registry.BACKENDS`): said to apply, `vae train`
with it must train there; not said, it must be refused with one line that names the backends it applies to.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vae_core.cli import main
import vae_core.cli.train
from vae_core.cli.backend_options import (APPLIES, DATA_PARALLEL, IN_PROCESS, PROCESSES, BackendOption, DataParallel,
                                          applies_suffix, backends_of, check_applies, nproc_help)
from vae_core.cli.parser import build_parser
from vae_core.registry import BACKENDS, backend_module

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--dataset", "digits", "--hidden-dims", "16", "--latent-dim", "2", "--batch-size", "256", "--epochs", "1",
        "--no-plots", "--no-progress"]
# The value each entry is tried with: one that asks something of the backend (not the entry's neutral value).
TRIES = {"--precision": "bf16", "--device": "cpu", "--nproc": "2", "--threads": "1"}
# TensorFlow takes these only before it starts: tried in a fresh process, as a user runs them (the others in this one)
FRESH_PROCESS = {"--threads", "--nproc"}
# A help that names a registered backend as a word (not a module such as torch.optim, nor a folder such as tf/).
NAMES_A_BACKEND = re.compile(r"\b(%s)\b(?![._:/])" % "|".join(map(re.escape, BACKENDS)))


def _options() -> list[tuple[str, argparse.Action]]:
    """(command, action) for every option of every `vae` command."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    return [(name, action) for name, sub in commands.items() for action in sub._actions if action.option_strings]


def test_every_entry_is_tried():
    assert set(TRIES) == set(APPLIES)
    assert all(TRIES[flag] != str(entry.neutral) for flag, entry in APPLIES.items())


def test_the_help_of_each_option_names_the_backends_from_the_table():
    seen = set()
    for command, action in _options():
        flag = action.option_strings[-1]
        if flag in APPLIES:
            seen.add(flag)
            assert action.help.endswith(applies_suffix(flag)), (command, flag, action.help)
        elif flag not in ("--backend", "--backends"):  # the options that pick them
            assert not NAMES_A_BACKEND.search(action.help or ""), (
                f"vae {command} {flag}'s help names a backend: add it to vae_core.cli.backend_options.APPLIES and "
                f"end its help with applies_suffix({flag!r})")
    assert seen == set(APPLIES)  # every entry is an option of some command
    assert applies_suffix("--precision") == f"(backends: {', '.join(BACKENDS)})"  # from the registry


def _train(argv: list[str], fresh: bool, capsys) -> tuple[int, str]:
    """`vae train argv`: (exit status, stderr), in a fresh process or in this one."""
    if not fresh:
        capsys.readouterr()
        status = main(["train", *argv])
        return status, capsys.readouterr().err
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-m", "vae_core.cli", "train", *argv], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    return result.returncode, result.stderr


@pytest.mark.parametrize("flag", sorted(APPLIES))
def test_an_option_runs_on_the_backends_its_help_names_and_is_refused_on_the_others(backend, flag, tmp_path, capsys):
    out = tmp_path / "run"
    status, stderr = _train(["--backend", backend, flag, TRIES[flag], *TINY, "--out", str(out)],
                            flag in FRESH_PROCESS, capsys)
    if backend in backends_of(flag):
        assert status == 0, stderr[-3000:]
        history = json.loads((out / "history.json").read_text())
        assert len(history["train_loss"]) == 1
        info = json.loads((out / "run.json").read_text())
        key = flag.removeprefix("--")
        assert info["backend"] == backend and info.get(key, TRIES[flag]) == TRIES[flag]
    else:
        assert status == 2, stderr[-3000:]
        line = stderr.strip().splitlines()[-1]
        assert f"{flag} {TRIES[flag]} applies to backends {', '.join(backends_of(flag))}, not {backend!r}" in line
        assert not out.exists()


def test_an_option_narrowed_to_other_backends_is_refused_before_anything_is_written(backend, tmp_path, capsys,
                                                                                     monkeypatch):
    """The refusal itself, with the table narrowed: --precision said to apply to every backend but this one."""
    others = tuple(name for name in BACKENDS if name != backend)
    monkeypatch.setitem(APPLIES, "--precision", BackendOption("fp32", others))
    helps = [action.help for _, action in _options() if action.option_strings[-1] == "--precision"]
    assert helps and all(h.endswith(f"(backends: {', '.join(others)})") for h in helps)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["train", "--backend", backend, "--precision", "bf16", *TINY, "--out", "o"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert f"--precision bf16 applies to backends {', '.join(others) or 'none'}, not {backend!r}; drop --precision" \
        in err[0]
    assert not (tmp_path / "o").exists()
    assert main(["train", "--backend", backend, "--precision", "fp32", *TINY, "--out", "o"]) == 0  # neutral: kept


def test_a_neutral_value_is_never_refused():
    for flag, entry in APPLIES.items():
        check_applies(flag, entry.neutral, "no-such-backend")
        check_applies(flag, None, "no-such-backend")
    with pytest.raises(ValueError, match=r"--nproc 2 applies to backends .*, not 'no-such-backend'; drop --nproc "
                                         r"\(or give it 1\), or pass --backend "):
        check_applies("--nproc", 2, "no-such-backend")


# ------------------------------------------------------------------ --threads and --nproc: no backend named in code

def test_train_names_no_backend():
    """`vae train` reaches a backend only through the registry and the tables (DATA_PARALLEL): a new backend needs
    no branch of its own there."""
    import inspect

    source = inspect.getsource(vae_core.cli.train)
    assert not re.findall(r"""["'](%s)["']""" % "|".join(map(re.escape, (*BACKENDS, *DATA_PARALLEL))), source)


def test_nproc_applies_to_the_backends_data_parallel_serves():
    assert APPLIES["--nproc"].backends == tuple(DATA_PARALLEL)
    assert backends_of("--nproc") == tuple(name for name in BACKENDS if name in DATA_PARALLEL)
    for name, way in DATA_PARALLEL.items():
        assert way.how in (PROCESSES, IN_PROCESS), name
        if way.how == IN_PROCESS:
            assert way.setup and callable(way.enter) and way.holds, name
    help_text = next(action.help for command, action in _options() if action.option_strings[-1] == "--nproc")
    assert help_text == f"{nproc_help()} {applies_suffix('--nproc')}"
    for name in backends_of("--nproc"):
        assert f"{name}, {DATA_PARALLEL[name].words}" in help_text


class _Stop(ValueError):
    """Raised by a stand-in once it has been reached: `vae train` ends there with status 2."""


def test_threads_is_set_through_every_backend_before_it_starts(backend, tmp_path, capsys, monkeypatch):
    """--threads N calls the backend's device.set_threads(N, "--threads"), whichever the backend, before the model
    is built (TensorFlow takes its thread counts only before it starts). A backend it does not apply to is refused
    by check_applies (test_an_option_runs_on_the_backends_its_help_names_and_is_refused_on_the_others)."""
    if backend not in backends_of("--threads"):
        pytest.skip(f"--threads applies to {', '.join(backends_of('--threads'))}")
    calls = []

    def set_threads(threads, argument="threads"):
        calls.append((threads, argument))
        raise _Stop("set_threads reached")

    monkeypatch.setattr(backend_module(backend).device, "set_threads", set_threads)
    capsys.readouterr()
    assert main(["train", "--backend", backend, "--threads", "3", *TINY, "--out", str(tmp_path / "o")]) == 2
    assert calls == [(3, "--threads")]
    assert capsys.readouterr().err.strip().endswith("set_threads reached")
    assert not (tmp_path / "o").exists()


def test_nproc_is_served_as_data_parallel_says(backend, tmp_path, capsys, monkeypatch):
    """--nproc 2 on each backend that serves it: torch's job launched as processes (the launcher stood in for), the
    in-process backends' devices asked of `backends.<name>.distributed.<setup>(2)` (stood in for, stopping there)."""
    if backend not in backends_of("--nproc"):
        pytest.skip(f"--nproc applies to {', '.join(backends_of('--nproc'))}")
    way, asked = DATA_PARALLEL[backend], []
    if way.how == PROCESSES:
        monkeypatch.setattr(vae_core.cli.train, "launch_torchrun",
                            lambda nproc, argv, lock: asked.append((nproc, argv[-1])) or 0)
        expected = 0
    else:
        def setup(n):
            asked.append((n, "setup"))
            raise _Stop(f"{way.setup} reached")

        monkeypatch.setattr(backend_module(backend).distributed, way.setup, setup)
        expected = 2
    capsys.readouterr()
    assert main(["train", "--backend", backend, "--nproc", "2", *TINY, "--out", str(tmp_path / "o")]) == expected
    assert asked == [(2, str(tmp_path / "o") if way.how == PROCESSES else "setup")]
    if way.how == IN_PROCESS:
        assert capsys.readouterr().err.strip().endswith(f"{way.setup} reached")
        assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("during_fit", [False, True], ids=["build-only", "build-and-fit"])
def test_in_process_devices_hold_around_the_build_or_the_build_and_fit(during_fit, tmp_path, capsys, monkeypatch):
    """The IN_PROCESS path of --nproc on any backend, run here on torch with a stand-in entry: the setup is called
    once with N, before the framework is asked for its device, and its context holds while the model is built
    (tf's strategy) or while it is built and trained (jax's mesh); --device other than auto is refused."""
    import contextlib

    backend = next(name for name in BACKENDS if name in backends_of("--nproc"))
    module = backend_module(backend)
    events = []

    @contextlib.contextmanager
    def enter(devices):
        events.append(("enter", devices))
        yield
        events.append(("exit", devices))

    monkeypatch.setattr(module.distributed, "stand_in_devices", lambda n: events.append(("setup", n)) or f"d{n}",
                        raising=False)
    resolve = module.device.resolve_device
    monkeypatch.setattr(module.device, "resolve_device", lambda *a: events.append(("resolve",)) or resolve(*a))
    monkeypatch.setitem(DATA_PARALLEL, backend, DataParallel(IN_PROCESS, "stand-in", setup="stand_in_devices",
                                                             enter=enter, during_fit=during_fit, holds="stand-in"))
    build, fit = vae_core.cli.train.build, vae_core.cli.train.fit
    monkeypatch.setattr(vae_core.cli.train, "build", lambda *a, **k: events.append(("build",)) or build(*a, **k))
    monkeypatch.setattr(vae_core.cli.train, "fit", lambda *a, **k: events.append(("fit",)) or fit(*a, **k))
    capsys.readouterr()
    assert main(["train", "--backend", backend, "--nproc", "2", *TINY, "--out", str(tmp_path / "o")]) == 0
    assert f"vae train: training: {backend} x 2 on digits" in capsys.readouterr().err
    inner = [("build",), ("exit", "d2"), ("fit",)] if not during_fit else [("build",), ("fit",), ("exit", "d2")]
    assert events == [("setup", 2), ("resolve",), ("enter", "d2"), *inner]
    assert main(["train", "--backend", backend, "--nproc", "2", "--device", "cpu", *TINY, "--out",
                 str(tmp_path / "p")]) == 2
    assert capsys.readouterr().err.strip().endswith(f"--nproc 2 with --backend {backend} trains on the stand-in's "
                                                    f"devices; drop --device cpu")
