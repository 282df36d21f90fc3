"""The two backends mirror each other: the same modules, the same public functions with the same parameters, and
the same public `VAE` methods and attributes. What only one framework has is listed here, with its reason."""
import importlib
import inspect

import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

from vae_core.registry import backend_module  # noqa: E402

MODULES = ("model", "device", "losses", "weights", "optim", "train", "metrics", "distributed")
# Framework hooks and conventions, not part of vae_core's own surface.
FRAMEWORK_MEMBERS = {
    "torch": {"forward", "device"},  # nn.Module's call; a module lives on one device
    "tf": {"build", "call", "compile", "compile_from_config", "train_step", "test_step", "get_config",
           "from_config", "metrics"},  # keras.Model's hooks
}
# A framework-specific class is its own name, not a function of another shape (the issue's rule).
FRAMEWORK_CLASSES = {"torch": {"NegativeELBO", "ProcessGroup"}, "tf": {"Sampling", "TorchAdam"}}
# Modules one framework needs alone: TF's tf.data pipelines that feed Keras' fit in blocks of batches.
FRAMEWORK_MODULES = {"torch": set(), "tf": {"pipeline"}}
# Functions one framework has alone: TF's tf.distribute strategies, which run their replicas inside one process
# (torch's processes are torchrun's to start: `join` finds them).
FRAMEWORK_FUNCTIONS = {("distributed", "tf"): {"strategy_of", "check_strategy", "replicas", "mirrored_strategy"}}
# Parameters one framework needs alone: (module, function) -> {backend: {parameter names}}.
FRAMEWORK_PARAMETERS = {("train", "fit"): {"torch": {"compile"}}}  # torch.compile; TF's fit step is always XLA


def _module(backend: str, name: str):
    backend_module(backend)  # sets up the framework (KERAS_BACKEND) first
    return importlib.import_module(f"backends.{backend}.{name}")


def _public_functions(module) -> dict:
    return {name: obj for name, obj in vars(module).items()
            if not name.startswith("_") and inspect.isfunction(obj) and obj.__module__ == module.__name__}


def _parameters(backend: str, module: str, name: str, function) -> list[tuple[str, str, str]]:
    skip = FRAMEWORK_PARAMETERS.get((module, name), {}).get(backend, set())
    return [(p.name, p.kind.name, repr(p.default)) for p in inspect.signature(function).parameters.values()
            if p.name not in skip]


@pytest.mark.parametrize("module", MODULES)
def test_modules_hold_the_same_public_functions_with_the_same_parameters(module):
    surfaces = {b: {name: f for name, f in _public_functions(_module(b, module)).items()
                    if name not in FRAMEWORK_FUNCTIONS.get((module, b), set())} for b in ("torch", "tf")}
    assert sorted(surfaces["torch"]) == sorted(surfaces["tf"])
    for name in surfaces["torch"]:
        assert _parameters("torch", module, name, surfaces["torch"][name]) == \
            _parameters("tf", module, name, surfaces["tf"][name]), f"{module}.{name}"


def test_public_classes_are_the_vae_or_framework_specific():
    for backend in ("torch", "tf"):
        classes = {name for m in MODULES for name, obj in vars(_module(backend, m)).items()
                   if inspect.isclass(obj) and not name.startswith("_")
                   and obj.__module__ == _module(backend, m).__name__}
        assert classes == {"VAE", "Trainer"} | FRAMEWORK_CLASSES[backend], backend


def test_vae_classes_have_the_same_public_methods_and_signatures():
    members = {}
    for backend in ("torch", "tf"):
        cls = backend_module(backend).VAE
        own = {name for klass in cls.__mro__ if klass.__module__.startswith(("backends.", "vae_core."))
               for name in vars(klass) if not name.startswith("_")}
        members[backend] = {name: getattr(cls, name) for name in own - FRAMEWORK_MEMBERS[backend]}
    assert sorted(members["torch"]) == sorted(members["tf"])
    for name, member in members["torch"].items():
        if callable(member) and not isinstance(member, type):
            assert _parameters("torch", "model", name, member) == _parameters("tf", "model", name,
                                                                                members["tf"][name]), name


def test_backends_hold_the_same_modules():
    import pkgutil

    found = {b: {m.name for m in pkgutil.iter_modules(backend_module(b).__path__)} - FRAMEWORK_MODULES[b]
             for b in ("torch", "tf")}
    assert found["torch"] == found["tf"] == set(MODULES)


def test_each_trainer_satisfies_the_backend_protocol():
    from vae_core.train.backend import TrainerBackend

    for backend in ("torch", "tf"):
        trainer = _module(backend, "train").Trainer
        members = {n for n in vars(TrainerBackend) if not n.startswith("_")} - {"name"}
        missing = sorted(m for m in members if not callable(getattr(trainer, m, None)))
        assert not missing, f"{backend} Trainer lacks {missing}"
        assert trainer.name == backend
