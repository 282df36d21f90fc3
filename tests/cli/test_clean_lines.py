"""Every refusal is one clean line (issue 32): VAE_CORE_DEBUG turns tracebacks on only for 1/true, each kind of
error keeps its exit status, config files with a byte-order mark or YAML 1.1's `1e-3` read as meant, a value of the
wrong type names its table and key, and a FIFO is refused, never opened. The refusals themselves are cases of
tests/cli/bad_inputs.py."""
from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from vae_core.cli import entry, main
from vae_core.cli.config_values import RUN_TYPES
from vae_core.cli.options import RUN_KEYS, read_config_file
from vae_core.io.atomic import WriteError
from vae_core.io.files import FILE, FOLDER, path_kind
from vae_core.train.callbacks import CallbackError

MISSING = ["evaluate", "missing.safetensors"]  # a usage error: exit status 2, one line


@pytest.mark.parametrize("value", ["0", "false", "FALSE", "", " ", "no", "off"])
def test_debug_off_keeps_one_line_and_status_2(value, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAE_CORE_DEBUG", value)
    assert main(MISSING) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "does not exist" in err


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "True", " 1 "])
def test_debug_on_raises_the_error(value, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAE_CORE_DEBUG", value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(MISSING)


@pytest.mark.parametrize("error, status, says", [
    (ValueError("bad value"), 2, "bad value"),
    (FileNotFoundError("no file"), 2, "no file"),
    (CallbackError("a logger failed"), 1, "a logger failed"),
    (WriteError("disk full"), 1, "disk full; the previous checkpoint is untouched"),
    (OSError(errno.EIO, "I/O error"), 1, "I/O error"),
    (OSError(errno.ENAMETOOLONG, "File name too long", "x" * 300), 2, "over the file system's limit of"),
])
def test_each_error_keeps_its_exit_status(error, status, says, monkeypatch, capsys):
    """The one helper that prints every error (`entry.report`) gives each kind the status its own block gave."""
    def command(args):
        raise error

    monkeypatch.delenv("VAE_CORE_DEBUG", raising=False)
    monkeypatch.setitem(entry.COMMANDS, "train", command)
    assert main(["train"]) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vae train: error: ") and says in err


def test_config_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b"\xef\xbb\xbf[train]\nepochs = 3\n")  # what some Windows editors save
    assert read_config_file(path) == {"train": {"epochs": 3}}


def test_yaml_1e_minus_3_is_a_number(tmp_path):
    """YAML 1.1 (PyYAML) reads `1e-3` as a string; a number field takes it as the number it is in YAML 1.2."""
    pytest.importorskip("yaml")
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  learning_rate: 1e-3\n  grad_clip_norm: 5E+1\nspec:\n  beta: .5\n")
    assert read_config_file(path) == {"train": {"learning_rate": 1e-3, "grad_clip_norm": 50.0}, "spec": {"beta": 0.5}}


def test_yaml_strings_stay_strings_where_a_string_goes(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  out: 1e-3\n")  # a folder named 1e-3: not a number
    assert read_config_file(path) == {"run": {"out": "1e-3"}}


def test_config_lists_become_tuples_and_null_is_the_default(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "c.yaml"
    path.write_text("spec:\n  hidden_dims: [32, 16]\n  image_shape: null\nrun:\n  image_size: [8, 8]\n")
    assert read_config_file(path) == {"spec": {"hidden_dims": (32, 16), "image_shape": None},
                                      "run": {"image_size": (8, 8)}}


def test_every_run_key_has_a_type():
    assert set(RUN_TYPES) == set(RUN_KEYS)


def test_path_kinds(tmp_path):
    (tmp_path / "f").write_text("x")
    os.mkfifo(tmp_path / "p")
    assert path_kind(tmp_path / "f", "x") == FILE and path_kind(tmp_path, "x") == FOLDER
    assert path_kind(tmp_path / "p", "x") == "a FIFO (named pipe)"
    assert path_kind(tmp_path / "missing", "x") is None and path_kind(tmp_path / "f" / "below", "x") is None
    with pytest.raises(ValueError, match=r"over the file system's limit of \d+ bytes per name"):
        path_kind(tmp_path / ("a" * 300), "x")


def test_a_fifo_as_data_is_refused_without_opening_it(tmp_path, capsys):
    """`vae train --data data.npy`, a FIFO: once blocked forever; now refused at once. Run in a thread so that a
    return of the bug fails this test instead of hanging the suite."""
    os.mkfifo(tmp_path / "data.npy")
    result = {}
    thread = threading.Thread(target=lambda: result.update(status=main(
        ["train", "--data", str(tmp_path / "data.npy"), "--out", str(tmp_path / "o"), "--no-progress"])), daemon=True)
    thread.start()
    thread.join(timeout=120)
    if thread.is_alive():  # blocked in open(): a writer lets it go, so the thread ends
        with open(tmp_path / "data.npy", "wb"):
            pass
        pytest.fail("vae train --data on a FIFO blocked")
    assert result["status"] == 2 and "a FIFO (named pipe)" in capsys.readouterr().err
    assert not Path(tmp_path / "o").exists()
