"""The backend contract: what a package in `vae_core.registry.BACKENDS` must provide, checked for every one of them.

A backend `backends.<name>` provides
1. the functions `BACKEND_FUNCTIONS` (`build_model`, `fit`, `evaluate`) and the modules `BACKEND_MODULES` (model,
   device, losses, weights, optim, steps, train, metrics, distributed), and no other modules but the ones its
   framework needs alone (`FRAMEWORK_MODULES`);
2. `train.Trainer`, which satisfies `vae_core.train.backend.TrainerBackend`: every method of the protocol with the
   protocol's parameters, `name` (the backend's registry name) and `world`;
3. the same public surface as the first registered backend (`REFERENCE`, torch): in each module the same public
   functions with the same parameters, the same public `VAE` methods and attributes, and as public classes only
   `VAE`, `Trainer` and its framework's own (`FRAMEWORK_CLASSES`).

What only one framework has is listed here, with its reason; a backend not named in these lists has none of it.
"""
import importlib
import inspect
import pkgutil
import re

import pytest

from tests.conftest import BACKEND_NAMES, backend_param
from vae_core.registry import BACKEND_FUNCTIONS, BACKEND_MODULES, backend_module
from vae_core.train.backend import TrainerBackend

REFERENCE = BACKEND_NAMES[0]  # every other backend's surface is compared with this one's
OTHERS = [backend_param(name, needs=(REFERENCE,)) for name in BACKEND_NAMES[1:]]

# Framework hooks and conventions, not part of vae_core's own surface.
FRAMEWORK_MEMBERS = {
    "torch": {"forward", "device"},  # nn.Module's call; a module lives on one device
    "tf": {"build", "call", "compile", "compile_from_config", "train_step", "test_step", "get_config",
           "from_config", "metrics",
           "export"},  # keras.Model's hooks; `export` is Keras' own, callable on a model never called (issue 30)
    "jax": {"dtype"},  # the parameters' dtype: float32, or float64 inside jax.enable_x64 (JAX has no model.double())
}
# A framework-specific class is its own name, not a function of another shape (the issue's rule).
FRAMEWORK_CLASSES = {"torch": {"NegativeELBO", "ProcessGroup"}, "tf": {"Sampling", "TorchAdam", "StepState"},
                     "jax": {"TorchAdamState"}}  # optax's state is a pytree of its own type, as optax's are
# Modules one framework needs alone: TF's tf.data pipelines that feed Keras' fit in blocks of batches; torch's
# launcher of torch.distributed.run (`vae train --nproc N`: torch's ranks are processes, TF's replicas are not).
FRAMEWORK_MODULES = {"torch": {"launch"}, "tf": {"pipeline"}}
# Functions one framework has alone: TF's tf.distribute strategies, which run their replicas inside one process
# (torch's processes are torchrun's to start: `join` finds them).
# The train step: TF's are the bodies of keras.Model's train_step/test_step hooks (and the train function Keras' own
# fit runs on blocks of batches); torch has no fit to hook into, and its trainer builds its step (torch.compile'd,
# if asked) once per fit.
FRAMEWORK_FUNCTIONS = {("distributed", "tf"): {"strategy_of", "check_strategy", "replicas", "mirrored_strategy"},
                       ("steps", "tf"): {"train_step", "test_step", "block_train_function",
                                         "default_steps_per_execution"},
                       ("steps", "torch"): {"make_step"},
                       # torch's CPU kernels compute on subnormal floats (slowly); XLA's flush them to zero itself
                       ("device", "torch"): {"flush_denormals", "flushing_denormals"},
                       # JAX is functional: the weights and Adam's state are pytrees outside the model, which the
                       # compiled steps take and return (weights: the model <-> its pytree; steps: the pure model
                       # and the compiled block, gather and evaluation); optax's Adam is a transformation and the
                       # step's float64 scalars come from the host (torch's and TF's optimizers hold both)
                       ("weights", "jax"): {"params_of", "set_params"},
                       ("optim", "jax"): {"torch_adam", "step_scalars"},
                       ("steps", "jax"): {"pure_model", "make_block", "make_gather", "make_eval",
                                          "clip_by_global_norm"},
                       # a jax.sharding mesh of this host's devices, TF's strategies' counterpart
                       ("distributed", "jax"): {"local_mesh", "mesh_of_context", "auto_mesh", "replicated",
                                                "batch_split"}}
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


# ------------------------------------------------------------------------------- 1. functions and modules


def test_the_backend_has_the_functions_and_exactly_the_modules(backend):
    package = backend_module(backend)
    missing = [name for name in BACKEND_FUNCTIONS if not inspect.isfunction(getattr(package, name, None))]
    assert not missing, f"backends.{backend} lacks the functions {missing}"
    found = {m.name for m in pkgutil.iter_modules(package.__path__)}
    assert sorted(found - FRAMEWORK_MODULES.get(backend, set())) == sorted(BACKEND_MODULES), \
        f"backends.{backend}: missing {sorted(set(BACKEND_MODULES) - found)}, " \
        f"unlisted {sorted(found - set(BACKEND_MODULES) - FRAMEWORK_MODULES.get(backend, set()))}"
    for name in BACKEND_MODULES:
        _module(backend, name)  # each one imports


# ------------------------------------------------------------------------------- 2. the trainer protocol


def _protocol_methods() -> dict:
    return {name: member for name, member in vars(TrainerBackend).items()
            if not name.startswith("_") and inspect.isfunction(member)}


def _assigned_in_init(cls, attribute: str) -> bool:
    """`self.<attribute> = ...` (alone or in a tuple assignment) in the class's __init__."""
    source = inspect.getsource(cls.__init__)
    return re.search(rf"\bself\.{attribute}\b[^=\n]*=(?!=)", source) is not None


def test_the_protocol_lists_the_methods_and_attributes_checked_here():
    assert sorted(_protocol_methods()) == ["begin_epoch", "export_adam", "export_weights", "import_adam",
                                           "import_weights", "set_data", "set_learning_rate", "train_steps",
                                           "validate"]
    assert sorted(TrainerBackend.__annotations__) == ["model", "name", "world"]


def test_the_trainer_satisfies_the_backend_protocol(backend):
    trainer = _module(backend, "train").Trainer
    for name, method in _protocol_methods().items():
        got = getattr(trainer, name, None)
        assert callable(got), f"backends.{backend}.train.Trainer lacks {name}"
        want = [(p.name, p.kind.name, repr(p.default)) for p in inspect.signature(method).parameters.values()]
        assert [(p.name, p.kind.name, repr(p.default)) for p in inspect.signature(got).parameters.values()] == \
            want, f"Trainer.{name}"
    assert trainer.name == backend  # written into checkpoints as the registry's name
    for attribute in TrainerBackend.__annotations__:
        assert attribute in vars(trainer) or _assigned_in_init(trainer, attribute), \
            f"backends.{backend}.train.Trainer sets no attribute {attribute!r}"


# ------------------------------------------------------------------------------- 3. the same surface as REFERENCE


@pytest.mark.parametrize("backend", OTHERS)
def test_the_package_functions_take_the_same_parameters(backend):
    def parameters(b: str, name: str):
        function = getattr(backend_module(b), name)
        return _parameters(b, function.__module__.rsplit(".", 1)[-1], name, function)  # where it is defined

    for name in BACKEND_FUNCTIONS:
        assert parameters(backend, name) == parameters(REFERENCE, name), name


@pytest.mark.parametrize("module", BACKEND_MODULES)
@pytest.mark.parametrize("backend", OTHERS)
def test_modules_hold_the_same_public_functions_with_the_same_parameters(backend, module):
    surfaces = {b: {name: f for name, f in _public_functions(_module(b, module)).items()
                    if name not in FRAMEWORK_FUNCTIONS.get((module, b), set())} for b in (REFERENCE, backend)}
    assert sorted(surfaces[backend]) == sorted(surfaces[REFERENCE])
    for name in surfaces[REFERENCE]:
        assert _parameters(backend, module, name, surfaces[backend][name]) == \
            _parameters(REFERENCE, module, name, surfaces[REFERENCE][name]), f"{module}.{name}"


def test_public_classes_are_the_vae_the_trainer_or_framework_specific(backend):
    classes = {name for m in BACKEND_MODULES for name, obj in vars(_module(backend, m)).items()
               if inspect.isclass(obj) and not name.startswith("_") and obj.__module__ == _module(backend, m).__name__}
    assert classes == {"VAE", "Trainer"} | FRAMEWORK_CLASSES.get(backend, set())


@pytest.mark.parametrize("backend", OTHERS)
def test_vae_classes_have_the_same_public_methods_and_signatures(backend):
    members = {}
    for name in (REFERENCE, backend):
        cls = backend_module(name).VAE
        own = {member for klass in cls.__mro__ if klass.__module__.startswith(("backends.", "vae_core."))
               for member in vars(klass) if not member.startswith("_")}
        members[name] = {member: getattr(cls, member) for member in own - FRAMEWORK_MEMBERS.get(name, set())}
    assert sorted(members[backend]) == sorted(members[REFERENCE])
    for name, member in members[REFERENCE].items():
        if callable(member) and not isinstance(member, type):
            assert _parameters(backend, "model", name, members[backend][name]) == \
                _parameters(REFERENCE, "model", name, member), name
