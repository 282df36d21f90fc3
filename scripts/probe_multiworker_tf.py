"""Does the TF VAE's step run under MultiWorkerMirroredStrategy? Two workers on this host, CPU, Keras' own fit.

    python -m scripts.probe_multiworker_tf --out scripts/results/probe_multiworker_tf.md

Each worker builds the model under the strategy's scope and runs Keras' `fit` on the batches `backends.tf.fit`
feeds under a strategy (`backends.tf.pipeline.replica_batches`: {"x", "eps", "share"}), which reach
`VAE.train_step`'s replica branch; and, as a control, on plain (x,) batches. The outcome of each, per worker, is
written to the report. keras-team/keras#20585 says Keras 3 does not support the strategy; this measures it for
the installed Keras and TensorFlow. `backends.tf.fit` refuses the strategy up front (README, "Data-parallel
training").
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PORTS = (23456, 23457)


def worker(index: int) -> dict:
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in PORTS]},
                                          "task": {"type": "worker", "index": index}})
    import keras
    import numpy as np
    import tensorflow as tf

    keras.config.disable_traceback_filtering()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import vae_core
    from backends.tf.optim import TorchAdam
    from backends.tf.pipeline import replica_batches
    from vae_core import VAESpec
    from vae_core.data import load_dataset

    x = load_dataset("digits").x_train[:256]
    outcome = {"worker": index, "tensorflow": tf.__version__, "keras": keras.__version__,
               "replicas_in_sync": strategy.num_replicas_in_sync}
    for name in ("vae_core batches {x, eps, share}", "plain (x,) batches"):
        with strategy.scope():
            model = vae_core.build("tf", VAESpec(input_dim=64, hidden_dims=(32,), latent_dim=2), seed=0)
            model.compile(optimizer=TorchAdam(global_clipnorm=1.0), jit_compile=False)
        if name.startswith("vae_core"):
            eps = tf.constant(np.random.default_rng(0).standard_normal((len(x), 2), dtype=np.float32))
            data = replica_batches(tf.constant(x), np.arange(len(x)), eps, 32, strategy.num_replicas_in_sync)
        else:
            data = tf.data.Dataset.from_tensor_slices(x).batch(32)
        try:
            logs = model.fit(data, epochs=1, verbose=0).history
            outcome[name] = f"ran: loss {logs['loss'][-1]:.4f}"
        except Exception as e:  # the measurement: which error, raised where
            outcome[name] = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print("RESULT " + json.dumps(worker(args.worker)), flush=True)
        return
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    procs = [subprocess.Popen([sys.executable, "-m", "scripts.probe_multiworker_tf", "--worker", str(i)], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for i in range(len(PORTS))]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        results += [json.loads(line[7:]) for line in out.splitlines() if line.startswith("RESULT ")]
    lines = ["# TF VAE step under MultiWorkerMirroredStrategy (2 workers, localhost, CPU)", "",
             "`python -m scripts.probe_multiworker_tf " + " ".join(sys.argv[1:]) + "`", ""]
    for r in results:
        lines.append(f"- worker {r['worker']} (TensorFlow {r['tensorflow']}, Keras {r['keras']}, "
                     f"{r['replicas_in_sync']} replicas in sync):")
        lines += [f"  - {k}: {v}" for k, v in r.items() if " " in k]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
