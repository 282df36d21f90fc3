"""The memory a training run needs, what this process can have, and the guard between them.

`estimate_training_memory(spec, batch_size=...)` counts, from the spec alone (NumPy arithmetic, nothing
allocated), the peak of a training run in either backend:

- state: the float32 weights, their gradients and Adam's two moments, 16 bytes per parameter, held all run;
- then the larger of
  - a step: one batch's activations (each layer's output before and after its ReLU, the sampled z, the loss's
    per-value terms) kept for the backward pass plus their gradients, the largest conv's unfold workspace, and
    the framework's parameter-sized temporaries (measured per backend: STEP_TEMP_BYTES_PER_PARAM);
  - a checkpoint write: the NumPy copies of the weights and both moments (12 bytes per parameter) that the
    checkpoint streams to disk;
- the framework itself (its libraries and allocator pools), a constant.

`scripts/bench_memory.py` compares it with the measured peak of real runs (`scripts/results/bench_memory.md`).

`available_memory()` is what this process can still take: the cgroup's limit less its usage where a cgroup
limits memory (containers, CI runners, systemd slices), and the kernel's MemAvailable otherwise (both where both
exist: the smaller).

`check_training_memory(...)` refuses (MemoryLimitError) when the estimate is above REFUSE_SHARE of what is
available, and returns notes (a large model, an MLP on large images) that callers warn with or print.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vae_core.model.architecture import CONV, DENSE
from vae_core.model.spec import VAESpec

GIB = 1024 ** 3
FLOAT32 = 4
STATE_BYTES_PER_PARAM = 4 * FLOAT32  # weights, gradients, Adam's m and v
CHECKPOINT_BYTES_PER_PARAM = 3 * FLOAT32  # the NumPy copies of weights, m and v a checkpoint write holds
# A step's parameter-sized temporaries beyond the state, by backend (scripts/results/bench_memory.md): torch's
# fused Adam computes about one at a time; TensorFlow's compiled step holds about four (Adam's update terms) at its
# peak. A backend not listed (one not measured yet, such as jax) gets the largest.
STEP_TEMP_BYTES_PER_PARAM = {"torch": 1 * FLOAT32, "tf": 5 * FLOAT32}
BF16_BYTES_PER_PARAM = 2  # bf16 autocast keeps a bfloat16 copy of the weights during a step
FRAMEWORK_BYTES = 1 * GIB  # torch's or TensorFlow's libraries, thread pools and allocator caches
# Refuse above this share of the available memory: the rest is left for the estimate's error (within 10% of the
# measured peaks), the page cache that reading data needs, and the user's other programs.
REFUSE_SHARE = 0.75
WARN_SHARE = 0.4  # above this share: a note that the run will take much of the machine
MLP_IMAGE_VALUES = 64 * 64 * 3  # an MLP on images with more values than this gets a note suggesting conv


class MemoryLimitError(MemoryError):
    """Training this model would need more memory than this process can have; nothing was allocated."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of one training process's peak, by part (see the module's docstring)."""

    params: int  # the model's parameters
    state: int  # weights + gradients + Adam's two moments
    step: int  # a training step's activations, their gradients, conv workspace and optimizer temporaries
    checkpoint: int  # the copies a checkpoint write holds
    framework: int  # the framework itself
    processes: int = 1  # processes (or replicas) that each hold all of the above

    @property
    def total(self) -> int:
        """The peak of all processes together, in bytes."""
        return self.processes * (self.state + max(self.step, self.checkpoint) + self.framework)


def estimate_training_memory(spec: VAESpec, *, batch_size: int, precision: str = "fp32", processes: int = 1,
                             backend: str | None = None) -> MemoryEstimate:
    """The peak memory of training `spec` in `backend` (None: the most any backend needs) with batches of
    `batch_size` (the global batch, split over `processes` data-parallel processes or replicas, each of which holds
    the whole model and optimizer)."""
    params = spec.num_params
    per_process = -(-batch_size // processes)
    values = spec.input_dim  # per example: the input ...
    workspace = 0
    for layer in spec.layers():
        if layer.kind == DENSE:
            out = layer.n_out
        else:
            h, w = layer.level.out_size if layer.kind == CONV else layer.level.in_size
            out = h * w * layer.n_out
            # im2col / col2im: k*k*in values per output position of the conv (or per input position of the
            # transposed conv, the same product)
            reads = layer.level.out_size
            workspace = max(workspace, layer.kernel_size ** 2 * (layer.n_in if layer.kind == CONV else layer.n_out)
                            * reads[0] * reads[1])
        values += out * (2 if layer.relu else 1)  # ... every layer's output, and its ReLU's
    values += 2 * spec.latent_dim  # eps and z
    values += 4 * spec.output_dim  # the likelihood's per-value terms (sigmoid, log-terms, their sum's inputs)
    activations = 2 * values * per_process * FLOAT32  # kept for backward, and their gradients
    temporaries = STEP_TEMP_BYTES_PER_PARAM.get(backend, max(STEP_TEMP_BYTES_PER_PARAM.values())) * params
    step = activations + workspace * per_process * FLOAT32 + temporaries
    if precision == "bf16":
        step += BF16_BYTES_PER_PARAM * params
    return MemoryEstimate(params=params, state=STATE_BYTES_PER_PARAM * params, step=step,
                          checkpoint=CHECKPOINT_BYTES_PER_PARAM * params, framework=FRAMEWORK_BYTES,
                          processes=processes)



def available_memory() -> tuple[int, str]:
    """(bytes this process can still allocate, where that number comes from)."""
    found: list[tuple[int, str]] = []
    cgroup = _cgroup_free()
    if cgroup is not None:
        found.append((cgroup, "the cgroup's memory limit less its usage"))
    meminfo = _meminfo_available()
    if meminfo is not None:
        found.append((meminfo, "MemAvailable in /proc/meminfo"))
    if not found:  # not Linux: the physical memory, the best this process can hope for
        try:
            found.append((os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "the physical memory"))
        except (ValueError, OSError, AttributeError):
            return 2 ** 62, "nothing (this system does not say)"
    return min(found)


def check_training_memory(spec: VAESpec, *, batch_size: int, precision: str = "fp32", processes: int = 1,
                          backend: str | None = None, fix_flags: bool = False) -> tuple[MemoryEstimate, list[str]]:
    """Raise MemoryLimitError when training `spec` would need more than REFUSE_SHARE of `available_memory()`;
    else return the estimate and notes worth telling the user. `fix_flags`: name the CLI's flags in the fixes
    (else the VAESpec fields)."""
    estimate = estimate_training_memory(spec, batch_size=batch_size, precision=precision, processes=processes,
                                        backend=backend)
    available, source = available_memory()
    who = f"{processes} processes of " if processes > 1 else ""
    head = (f"training this model ({spec.num_params:,} parameters, {spec.architecture} on {_shape(spec)} inputs, "
            f"batch {batch_size}) needs about {_gib(estimate.total)} ({who}weights, gradients, Adam's moments, "
            f"activations and a checkpoint write), and this process can have {_gib(available)} ({source})")
    if estimate.total > REFUSE_SHARE * available:
        raise MemoryLimitError(f"{head}: more than the {REFUSE_SHARE:.0%} of it that a run may take; "
                               f"{_fixes(spec, estimate, fix_flags)}")
    notes = []
    if estimate.total > WARN_SHARE * available:
        notes.append(f"{head}: the run will take much of this machine's memory")
    if spec.architecture == "mlp" and spec.input_dim > MLP_IMAGE_VALUES and spec.image_shape is not None:
        conv = "--architecture conv" if fix_flags else "architecture='conv'"
        notes.append(f"an MLP on {_shape(spec)} images has {spec.num_params:,} parameters, most of them in its "
                     f"first and last layers; {conv} learns images with far fewer")
    return estimate, notes


def _fixes(spec: VAESpec, estimate: MemoryEstimate, flags: bool) -> str:
    """The changes that shrink the estimate: a smaller batch only where the batch's activations are the peak."""
    if flags:
        fixes = ["smaller images (--image-size H,W)", "a smaller --batch-size", "narrower --hidden-dims"]
        if estimate.step <= estimate.checkpoint:
            fixes.remove("a smaller --batch-size")
        if spec.architecture == "mlp" and spec.image_shape is not None:
            fixes.insert(1, "--architecture conv")
        return (f"use {', '.join(fixes[:-1])} or {fixes[-1]}; or --no-memory-check if you know the machine "
                f"has the memory")
    fixes = ["smaller images", "a smaller TrainConfig.batch_size", "narrower hidden_dims"]
    if estimate.step <= estimate.checkpoint:
        fixes.remove("a smaller TrainConfig.batch_size")
    if spec.architecture == "mlp" and spec.image_shape is not None:
        fixes.insert(1, "architecture='conv'")
    return f"use {', '.join(fixes[:-1])} or {fixes[-1]}; or pass check_memory=False if you know the machine has it"


def _shape(spec: VAESpec) -> str:
    return "x".join(map(str, spec.image_shape)) if spec.image_shape is not None else str(spec.input_dim)


def _gib(n: int) -> str:
    return f"{n / GIB:,.1f} GiB"


def _cgroup_free() -> int | None:
    """The tightest cgroup limit less usage along this process's cgroup path (v2), or the v1 memory controller's."""
    frees = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hierarchy, controllers, rel = line.split(":", 2)
        if hierarchy == "0":  # cgroup v2: check the cgroup and each parent up to the root
            node = Path("/sys/fs/cgroup") / rel.lstrip("/")
            while True:
                free = _limit_less_usage(node / "memory.max", node / "memory.current")
                if free is not None:
                    frees.append(free)
                if node == Path("/sys/fs/cgroup"):
                    break
                node = node.parent
        elif "memory" in controllers.split(","):  # cgroup v1
            for node in (Path("/sys/fs/cgroup/memory") / rel.lstrip("/"), Path("/sys/fs/cgroup/memory")):
                free = _limit_less_usage(node / "memory.limit_in_bytes", node / "memory.usage_in_bytes")
                if free is not None:
                    frees.append(free)
    return min(frees) if frees else None


def _limit_less_usage(limit_file: Path, usage_file: Path) -> int | None:
    try:
        limit = limit_file.read_text().strip()
        if limit == "max" or int(limit) >= 2 ** 60:  # no limit (v1 writes a huge number for none)
            return None
        return max(0, int(limit) - int(usage_file.read_text().strip()))
    except (OSError, ValueError):
        return None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
