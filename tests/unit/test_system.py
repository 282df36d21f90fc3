"""vae_core.system: the memory estimate and guard, and the thread policy (NumPy only, no framework)."""
from __future__ import annotations

import pytest

from vae_core import VAESpec
from vae_core.system import memory, threads
from vae_core.system.memory import MemoryLimitError, check_training_memory, estimate_training_memory

GIB = 1024 ** 3


def test_estimate_counts_the_training_state_and_the_larger_of_step_and_checkpoint():
    spec = VAESpec(image_shape=(64, 64, 3))
    e = estimate_training_memory(spec, batch_size=128)
    assert e.params == spec.num_params
    assert e.state == 16 * spec.num_params and e.checkpoint == 12 * spec.num_params
    assert e.total == e.state + max(e.step, e.checkpoint) + e.framework
    bigger_batch = estimate_training_memory(spec, batch_size=1024)
    assert bigger_batch.step > e.step and bigger_batch.state == e.state  # activations grow with the batch
    bf16 = estimate_training_memory(spec, batch_size=128, precision="bf16")
    assert bf16.step == e.step + 2 * spec.num_params  # autocast's bfloat16 copy of the weights
    two = estimate_training_memory(spec, batch_size=128, processes=2)  # each holds the model, half the batch
    assert two.total == 2 * (two.state + max(two.step, two.checkpoint) + two.framework) and two.step < e.step


def test_estimate_of_a_conv_model_counts_its_feature_maps():
    mlp = estimate_training_memory(VAESpec(image_shape=(64, 64, 3), hidden_dims=(16,)), batch_size=64)
    conv = estimate_training_memory(VAESpec(image_shape=(64, 64, 3), hidden_dims=(16,), architecture="conv"),
                                    batch_size=64)
    # the conv maps (32 x 32 x 32 and 16 x 16 x 64 per example, each before and after ReLU, both ways) outweigh
    # the MLP's 16-wide layers
    assert conv.step - 4 * conv.params > mlp.step - 4 * mlp.params


def test_guard_refuses_above_its_share_of_the_available_memory(monkeypatch):
    spec = VAESpec(image_shape=(427, 640, 3))  # the two sample photos, full size: 657M parameters
    need = estimate_training_memory(spec, batch_size=1, backend="torch").total
    monkeypatch.setattr(memory, "available_memory", lambda: (int(need / memory.REFUSE_SHARE) - 1, "a test"))
    with pytest.raises(MemoryLimitError, match=r"training this model \(657,037,480 parameters, mlp on 427x640x3 "
                                               r"inputs, batch 1\) needs about 18\.1 GiB .* this process can have "
                                               r"24\.2 GiB \(a test\): more than the 75% .*--image-size H,W\), "
                                               r"--architecture conv or narrower --hidden-dims; or "
                                               r"--no-memory-check"):
        check_training_memory(spec, batch_size=1, backend="torch", fix_flags=True)
    monkeypatch.setattr(memory, "available_memory", lambda: (int(need / memory.REFUSE_SHARE) + 1, "a test"))
    _, notes = check_training_memory(spec, batch_size=1, backend="torch")  # fits: notes only
    assert len(notes) == 2 and "much of this machine's memory" in notes[0] and "architecture='conv'" in notes[1]


def test_small_model_gets_no_note(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: (16 * GIB, "a test"))
    assert check_training_memory(VAESpec(), batch_size=128) == (estimate_training_memory(VAESpec(), batch_size=128),
                                                                 [])
    torch, tf = (estimate_training_memory(VAESpec(), batch_size=128, backend=b) for b in ("torch", "tf"))
    assert torch.total < tf.total == estimate_training_memory(VAESpec(), batch_size=128, backend="jax").total


def test_available_memory_reads_this_machine():
    available, source = memory.available_memory()
    assert 0 < available < 2 ** 62 and source  # /proc/meminfo or a cgroup on Linux


def test_cgroup_limit_less_usage(tmp_path):
    (tmp_path / "max").write_text("1073741824\n")
    (tmp_path / "current").write_text("73741824\n")
    assert memory._limit_less_usage(tmp_path / "max", tmp_path / "current") == 1_000_000_000
    (tmp_path / "max").write_text("max\n")
    assert memory._limit_less_usage(tmp_path / "max", tmp_path / "current") is None


def test_thread_policy_fixed_and_auto(monkeypatch):
    assert threads.ThreadPolicy(3).first() == 3 and threads.ThreadPolicy(3).update() == 3
    monkeypatch.setattr(threads, "usable_cpus", lambda: 4)
    monkeypatch.setattr(threads, "_others_running_now", lambda: 1)  # one other process, right now
    ticks = iter([(1000, 50), (1000 + 200 + 10, 60)])  # then others ran 200 ticks beside our 10, over 1 s
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(ticks))
    clock = iter([0.0, 1.0])
    monkeypatch.setattr(threads, "monotonic", lambda: next(clock))
    monkeypatch.setattr(threads, "_ticks_per_second", lambda: 100)
    policy = threads.ThreadPolicy(None)
    assert policy.first() == 3  # one of the 4 CPUs taken by another process at the start
    assert policy.update() == 2  # two kept busy over the last second
    assert threads._others_running_now() >= 0  # this machine's own count


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_check_threads_refuses_what_is_not_a_count(bad):
    with pytest.raises(ValueError, match=r"fit: threads must be None \(auto: .*\) or an int >= 1; got"):
        threads.check_threads(bad)
    assert threads.check_threads(None) is None and threads.check_threads(2) == 2
    assert threads.usable_cpus() >= 1
