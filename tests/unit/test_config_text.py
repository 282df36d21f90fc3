"""A --config file gives each key once (issue 32): YAML's safe loader would keep the last of two silently, so the
reader refuses the second, naming the key and both lines; TOML's parser refuses it itself, and the message shows the
line it points at. YAML's merge keys keep their meaning."""
import re

import pytest

from vae_core.cli.options import read_config_file

pytest.importorskip("yaml")


@pytest.mark.parametrize("text, key, lines", [
    ("train:\n  epochs: 2\n  batch_size: 8\n  epochs: 3\n", "epochs", (2, 4)),
    ("spec:\n  latent_dim: 2\ntrain:\n  seed: 1\nspec:\n  latent_dim: 3\n", "spec", (1, 5)),
    ("train: {seed: 1, seed: 2}\n", "seed", (1, 1)),
])
def test_a_yaml_key_given_twice_is_refused_naming_it_and_its_lines(tmp_path, text, key, lines):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"^--config '.*c\.yaml': key '{key}' is given twice \(lines {lines[0]} and "
                                         rf"{lines[1]}\); YAML would keep the last silently\. Keep one of them$"):
        read_config_file(path)


def test_yaml_without_repeats_and_with_merge_keys_reads_as_before(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("spec: &s\n  latent_dim: 2\ntrain:\n  epochs: 3\n  seed: 1\n")
    assert read_config_file(path) == {"spec": {"latent_dim": 2}, "train": {"epochs": 3, "seed": 1}}
    path.write_text("run: &r {backend: torch}\ntrain:\n  <<: {epochs: 2, seed: 4}\n  epochs: 5\n")
    assert read_config_file(path)["train"] == {"epochs": 5, "seed": 4}  # an explicit key overrides a merged one


@pytest.mark.parametrize("text, line", [("[train]\nepochs = 2\nepochs = 3\n", "epochs = 3"),
                                        ("[train]\nepochs = 2\n[train]\nseed = 1\n", "[train]")])
def test_a_toml_key_or_table_given_twice_is_refused_with_its_line(tmp_path, text, line):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"is not valid TOML: .*\(at line 3, column \d+\): '{re.escape(line)}' gives "
                                         rf"a key or table a second time; keep one of them$"):
        read_config_file(path)
