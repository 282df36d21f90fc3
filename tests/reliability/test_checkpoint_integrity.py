"""Silent corruption: every tensor and the metadata carry a SHA-256, so no single-bit flip loads; a seeded fuzzer
of the reader; schema-v1 files without checksums still load, with a warning."""
import json
import struct

import numpy as np
import pytest

from vae_core import AdamState, Checkpoint, CheckpointError, TrainConfig, VAESpec, init_weights, read_checkpoint
from vae_core.io.checkpoint import METADATA_KEY, write_checkpoint

SPEC = VAESpec(input_dim=12, hidden_dims=(6,), latent_dim=2, image_shape=(3, 4))
FLIPS = 2000  # random single-bit flips, over the whole file
MUTATIONS = 1500  # fuzzer mutations (bit flips, byte runs, truncations, header edits, huge sizes)


def _checkpoint(tmp_path):
    weights = init_weights(SPEC, 0)
    adam = AdamState(step=3, m={k: v * 0.1 for k, v in weights.items()}, v={k: v * v for k, v in weights.items()})
    path = write_checkpoint(tmp_path / "c.safetensors", Checkpoint(
        spec=SPEC, weights=weights, train_config=TrainConfig(epochs=2), epoch=1, history={"train_loss": [1.5]},
        adam=adam, trainer_state={"lr": 1e-3}, backend="torch"))
    return path, path.read_bytes()


def _arrays(ckpt) -> dict:
    moments = {} if ckpt.adam is None else {**{f"m.{k}": v for k, v in ckpt.adam.m.items()},
                                            **{f"v.{k}": v for k, v in ckpt.adam.v.items()}}
    return {**ckpt.weights, **moments}


def _same_as(original, loaded) -> bool:
    a, b = _arrays(original), _arrays(loaded)
    return a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a) and \
        (original.epoch, original.history, original.trainer_state) == (loaded.epoch, loaded.history,
                                                                       loaded.trainer_state)


def _outcome(path, data, original) -> str:
    path.write_bytes(data)
    try:
        loaded = read_checkpoint(path)
    except CheckpointError:
        return "refused"
    return "identical" if _same_as(original, loaded) else "LOADED DIFFERENT DATA"


def test_no_single_bit_flip_loads(tmp_path):
    path, good = _checkpoint(tmp_path)
    original = read_checkpoint(path)
    header_end = 8 + struct.unpack("<Q", good[:8])[0]
    rng = np.random.default_rng(0)
    positions = np.concatenate([np.arange(header_end),  # every bit of the header's bytes, one bit each ...
                                rng.integers(header_end, len(good), FLIPS)])  # ... and random bytes of the data
    outcomes = {}
    for i, pos in enumerate(positions):
        bad = bytearray(good)
        bad[pos] ^= 1 << int(rng.integers(8)) if pos >= header_end else 1 << (i % 8)
        outcomes.setdefault(_outcome(path, bytes(bad), original), []).append(int(pos))
    assert set(outcomes) == {"refused"}, {k: v[:5] for k, v in outcomes.items()}
    assert len(outcomes["refused"]) == len(positions) > FLIPS


def test_a_flipped_tensor_byte_names_the_tensor(tmp_path):
    path, good = _checkpoint(tmp_path)
    bad = bytearray(good)
    bad[-1] ^= 0x10  # the last byte of the last tensor in the file
    path.write_bytes(bytes(bad))
    with pytest.raises(CheckpointError, match=r"tensor '[\w.]+' does not match its SHA-256 checksum"):
        read_checkpoint(path)


def _mutate(good: bytes, rng: np.random.Generator) -> bytes:
    data = bytearray(good)
    header_len = struct.unpack("<Q", good[:8])[0]
    kind = rng.integers(6)
    if kind == 0:  # flip 1-8 random bits anywhere
        for pos in rng.integers(0, len(data), rng.integers(1, 9)):
            data[pos] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # overwrite a run of bytes with random ones
        start, length = int(rng.integers(len(data))), int(rng.integers(1, 64))
        run = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        data[start:start + length] = run[:len(data) - start]
    elif kind == 2:  # truncate
        data = data[:int(rng.integers(len(data)))]
    elif kind == 3:  # a huge or wrong header length
        sizes = [0, 1, header_len - 1, header_len + 1, 2**31, 2**63 - 1, 2**64 - 1]
        data[:8] = struct.pack("<Q", sizes[int(rng.integers(len(sizes)))])
    elif kind == 4:  # edit the header JSON: a number, a name, a dtype, or the metadata, then re-encode it validly
        header = json.loads(good[8:8 + header_len])
        name = str(rng.choice(sorted(k for k in header if k != "__metadata__")))
        edit = int(rng.integers(5))
        if edit == 0:
            header[name]["shape"] = [int(x) + int(rng.integers(1, 3)) for x in header[name]["shape"]]
        elif edit == 1:
            header[name]["data_offsets"][1] = int(rng.choice([0, 10**15, header[name]["data_offsets"][1] - 4]))
        elif edit == 2:
            header[name]["dtype"] = str(rng.choice(["F64", "F16", "I32", "U8", "BOOL"]))
        elif edit == 3:
            header[name + "x"] = header.pop(name)
        else:
            meta = json.loads(header["__metadata__"][METADATA_KEY])
            meta["epoch"] = int(meta["epoch"]) + 1
            header["__metadata__"][METADATA_KEY] = json.dumps(meta)
        text = json.dumps(header).encode()
        data = bytearray(struct.pack("<Q", len(text)) + text + good[8 + header_len:])
    else:  # append or insert garbage
        pos = int(rng.integers(len(data)))
        data[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 32)), dtype=np.uint8).tobytes()
    return bytes(data)


def test_fuzzed_files_load_identically_or_raise_checkpoint_error(tmp_path):
    path, good = _checkpoint(tmp_path)
    original = read_checkpoint(path)
    rng = np.random.default_rng(1)
    counts = {}
    for _ in range(MUTATIONS):
        mutated = _mutate(good, rng)
        outcome = _outcome(path, mutated, original)  # any other exception fails the test here
        counts[outcome] = counts.get(outcome, 0) + 1
    assert "LOADED DIFFERENT DATA" not in counts, counts
    assert counts["refused"] > 0.95 * MUTATIONS, counts


def test_a_schema_v1_file_loads_with_a_warning(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "v1.safetensors"
    save_file(init_weights(SPEC, 0), str(path),
              metadata={METADATA_KEY: json.dumps({"schema_version": 1, "spec": SPEC.to_dict(), "epoch": 4})})
    with pytest.warns(UserWarning, match="schema-v1 checkpoint without checksums") as caught:
        ckpt = read_checkpoint(path)
    assert ckpt.epoch == 4 and ckpt.weights.keys() == init_weights(SPEC, 0).keys()
    assert caught[0].filename == __file__


def test_a_schema_v2_file_without_its_checksums_is_refused(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "v2.safetensors"
    save_file(init_weights(SPEC, 0), str(path),
              metadata={METADATA_KEY: json.dumps({"schema_version": 2, "spec": SPEC.to_dict(), "epoch": 4})})
    with pytest.raises(CheckpointError, match="without its 'vae_core.sha256' header checksum"):
        read_checkpoint(path)
