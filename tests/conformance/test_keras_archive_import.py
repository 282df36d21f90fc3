"""A `.keras` archive of the TF backend's VAE in a user's next session: plain `keras.models.load_model` in a fresh
interpreter, where nothing has imported `backends.tf` yet.

Keras 3 imports a config's `module` itself only for its own packages (keras, keras_hub, keras_cv, keras_nlp: the
`package in {...}` branch of `keras.src.saving.serialization_lib._retrieve_class_or_fn`); for any other module it
looks the class up among the registered ones, which a module registers when it is imported. So the load either works
or fails with Keras' "Could not locate class" error, which prints the model's config: that config must name the
import to add (`backends.tf.model.LOAD_HINT`). After the import, the same call loads the model, with its outputs.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from vae_core import VAESpec, build

SPEC = VAESpec(input_dim=16, hidden_dims=(8,), latent_dim=2)

# Run in a fresh interpreter, in a folder outside the repository: load without the import, then with it.
CODE = """
import sys
import numpy as np
import keras
folder = sys.argv[1]
assert not any(name == "backends" or name.startswith("backends.") for name in sys.modules), "imported already"
try:
    keras.models.load_model(folder + "/vae.keras", safe_mode=True)
    print("LOADED WITHOUT THE IMPORT")
except TypeError as e:
    print("ERROR " + " ".join(str(e).split()))
import backends.tf
model = keras.models.load_model(folder + "/vae.keras", safe_mode=True)
np.save(folder + "/got.npy", model.reconstruct(np.load(folder + "/x.npy")).numpy())
print("LOADED AFTER THE IMPORT", type(model).__module__, type(model).__name__)
"""


def test_a_keras_archive_loads_in_a_fresh_process_or_names_the_import_to_add(tmp_path):
    pytest.importorskip("tensorflow")
    from backends.tf.model import LOAD_HINT
    from backends.tf.optim import TorchAdam

    model = build("tf", SPEC, seed=0)
    model.compile(optimizer=TorchAdam(1e-3))  # a registered optimizer too: the one import registers every class
    x = np.random.default_rng(0).random((4, SPEC.input_dim), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    model.save(tmp_path / "vae.keras")
    want = model.reconstruct(x).numpy()

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PYTHONPATH", None)  # vae-core as installed, not the repository on the path
    result = subprocess.run([sys.executable, "-c", CODE, str(tmp_path)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    first, last = (line for line in result.stdout.splitlines() if line.startswith(("ERROR", "LOADED")))
    if first.startswith("ERROR"):  # Keras' own message, with the model's config, which names the import
        assert "Could not locate class 'VAE'" in first and LOAD_HINT in first, first
        assert "import backends.tf" in LOAD_HINT
    assert last.split()[-2:] == ["backends.tf.model", "VAE"]
    np.testing.assert_array_equal(np.load(tmp_path / "got.npy"), want)


def test_the_load_hint_is_ignored_by_from_config():
    pytest.importorskip("tensorflow")
    from backends.tf.model import LOAD_HINT, VAE

    model = build("tf", SPEC, seed=3)
    config = model.get_config()
    assert config["load_with"] == LOAD_HINT
    clone = VAE.from_config(config)
    assert clone.spec == SPEC and clone.get_config() == config
