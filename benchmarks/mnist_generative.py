"""MNIST: the zoo VAE and GAN against the keras-io peers (vae.py, dcgan_overriding_train_step.py), same run.

    python benchmarks/mnist_generative.py [--minutes=10] [--vae_epochs=0] [--gan_epochs=0]
                                          [--throughput_repeats=3] [--parts=vae,gan,throughput]

By default each model trains `--minutes` of wall time: the zoo with the README's command and
its entry's defaults plus the time budget (`--config max_seconds=600`, to which its schedule
fits), the peers their recipes until the time is up. `--vae_epochs`/`--gan_epochs` compare
fixed epochs instead.

Data: `../shared/data/images/mnist_train.npz`, split by the zoo's `.npz` loader with its fixed
seed into 55,000 training and 5,000 held-out images; the peers get exactly those arrays.

- VAE: the zoo `vae` (preset `--vae_preset`) and the peer (latent 2, the recipe) train for the
  same epochs on the 55,000 with batch 128; negative ELBO (Bernoulli on [0, 1] intensities,
  nats per image, one-sample estimate) on the 5,000.
- GAN: the zoo `gan` (preset `--gan_preset`, its trainer defaults: batch 32, Adam 2e-4 with
  beta_1 0.5) and the peer DCGAN (its recipe's batch 32, `--gan_peer_batch_size`) see the same
  number of training images: `--gan_epochs` passes over `--gan_train_examples` of the 55,000 (the peer trains on
  that many images of a fixed permutation of the split; the zoo on its own shuffle of the whole
  split for the same number of steps). 0 means all 55,000.
- Fréchet distance for all four: 5,000 samples of each model (latents of seed 0) against the
  5,000 held-out images, in the feature space of the zoo's classifier (`zoo/images/frechet.py`),
  one classifier file for every row. The same figure for 5,000 real training images is the floor.
- Throughput (`throughput`): the zoo on the peers' exact model sizes (VAE latent 2, conv 32/64,
  dense 16; DCGAN latent 128, generator 128/256 without batch norm, discriminator 64/128/128)
  against the peers' `model.fit`, interleaved `--throughput_repeats` times, medians. Both count
  real images per second after warm-up (the zoo: its trainer's timed windows after the first;
  the peers: epoch 2 of `fit`).

Skips with a message when the data file is absent.
"""

import json
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags, logging  # noqa: E402

from benchmarks.developer_data import PEER_SIZES  # noqa: E402

FLAGS = flags.FLAGS
DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "data", "images", "mnist_train.npz")
flags.DEFINE_string("data", DEFAULT_DATA, "MNIST .npz with x_train (and y_train).")
flags.DEFINE_list("parts", ["vae", "gan", "throughput"], "Comparisons to run.")
flags.DEFINE_float("minutes", 10.0, "Training wall time of each model (zoo and peer, VAE and GAN) when "
                   "--vae_epochs / --gan_epochs are 0: the zoo runs its defaults with --config "
                   "max_seconds (the README's time-budget flag), the peers their recipes until the time is up.")
flags.DEFINE_bool("peers", True, "Also train the peers (--nopeers: only the zoo's figures, e.g. against the "
                  "issue's absolute targets).")
flags.DEFINE_integer("vae_epochs", 0, "Epochs of both VAEs over the 55,000 instead of --minutes (0: --minutes).")
flags.DEFINE_string("vae_preset", "small", "Zoo VAE preset.")
flags.DEFINE_multi_string("vae_config", [], "--config overrides of the zoo VAE run (default: none, the entry's "
                          "defaults).")
flags.DEFINE_integer("gan_epochs", 0, "Passes of both GANs over --gan_train_examples images instead of --minutes "
                     "(0: --minutes).")
flags.DEFINE_integer("gan_train_examples", 0, "Training images the GANs pass over (0: all 55,000, whole epochs; "
                     "a smaller count for a quick look).")
flags.DEFINE_string("gan_preset", "small", "Zoo GAN preset.")
flags.DEFINE_multi_string("gan_config", [], "--config overrides of the zoo GAN run (default: none, the "
                          "entry's DCGAN trainer defaults: lr 2e-4, beta_1 0.5, no clipping).")
flags.DEFINE_integer("gan_batch_size", 32, "Batch size of the zoo GAN's quality run (the entry's default).")
flags.DEFINE_integer("batch_size", 128, "Batch size of the zoo runs, the VAE peer (its recipe's) and the "
                     "throughput pairs (both sides).")
flags.DEFINE_integer("gan_peer_batch_size", 32, "Batch size of the peer DCGAN's quality run (its recipe's: "
                     "4x the steps per epoch of batch 128).")
flags.DEFINE_integer("frechet_samples", 5000, "Samples per model for the Fréchet distance.")
flags.DEFINE_integer("throughput_repeats", 3, "Interleaved repeats of each throughput pair.")
flags.DEFINE_integer("gan_throughput_steps", 30, "Steps of batch 128 per timed GAN epoch (a multiple of 10; "
                     "10 gave windows of ~10 s whose noise hid the ratio).")
flags.DEFINE_string("out", "", "Also write the figures as JSON here.")



def _split():
    from zoo import sources
    from zoo.images.config import ImageDataConfig
    from zoo.images.data import ImageData

    data = ImageData(sources.parse(FLAGS.data), ImageDataConfig())
    return data.split("train"), data.split("validation")


def _zoo_train(model, workdir, preset, overrides, evaluate=True, **kwargs):
    """Trains with the entry's defaults plus `overrides`; returns (seconds, metrics rows, batch size)."""
    from zoo import commands

    start = time.perf_counter()
    commands.train(model, workdir, data=FLAGS.data, preset=preset, evaluate=evaluate,
                   overrides=list(overrides) + ["checkpoint_every=100000"], **kwargs)
    seconds = time.perf_counter() - start
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    with open(os.path.join(workdir, "zoo.json")) as f:
        batch_size = json.load(f)["trainer_config"]["batch_size"]
    return seconds, rows, batch_size


def _budget():
    """--config max_seconds for the zoo and `max_seconds` for the peers, or nothing in epoch mode."""
    return FLAGS.minutes * 60


def _steady_rate(rows, skip_steps, batch_size=None):
    """Examples/s over the trainer's timed windows that start at or after `skip_steps`."""
    batch_size = batch_size or FLAGS.batch_size
    train = [r for r in rows if r["kind"] == "train"]
    examples = seconds = 0.0
    previous = 0
    for row in train:
        steps = row["step"] - previous
        if previous >= skip_steps:
            examples += steps * batch_size
            seconds += steps * row["step_time"]
        previous = row["step"]
    return examples / seconds if seconds else float("nan")


def _fd(scorer, images, real_features):
    from zoo.images import frechet

    return frechet.frechet_distance(scorer.features(images), real_features)


def vae_part(x_train, x_val, scorer, real_features):
    from benchmarks import keras_io_vae_peer
    from zoo import commands
    from zoo.images.entry import latents

    workdir = tempfile.mkdtemp(prefix="bench-vae-")
    epochs = FLAGS.vae_epochs
    try:
        length = {"epochs": epochs} if epochs else {}
        budget = [] if epochs else [f"max_seconds={_budget()}"]
        seconds, rows, batch_size = _zoo_train("vae", workdir, FLAGS.vae_preset,
                                               FLAGS.vae_config + budget + ["log_every=100"], **length)
        steps_per_epoch = len(x_train) // batch_size
        entry, trainer, source = commands.restore(workdir)
        metrics = entry.elbo_metrics(trainer.model, source, "validation")
        z = latents(FLAGS.frechet_samples, 0, entry.latent_dim).numpy()
        zoo = {**metrics, "frechet_distance": _fd(scorer, entry.generate(trainer.model, z), real_features),
               "examples_per_sec": _steady_rate(rows, steps_per_epoch, batch_size), "train_seconds": seconds,
               "steps": int(trainer.step.numpy()), "batch_size": batch_size,
               "per_epoch": [{k: r[k] for k in ("epoch", "neg_elbo", "frechet_distance")}
                             for r in rows if r["kind"] == "validation"]}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not FLAGS.peers:
        return {"zoo": zoo}
    peer = keras_io_vae_peer.train(x_train, x_val, epochs=epochs or 10**6, batch_size=FLAGS.batch_size,
                                   seed=0, max_seconds=None if epochs else _budget())
    peer_row = {"neg_elbo": peer["neg_elbo"], "reconstruction": peer["recon"], "kl": peer["kl"],
                "frechet_distance": _fd(scorer, peer["sample"](FLAGS.frechet_samples, 0), real_features),
                "examples_per_sec": peer["examples_per_sec"], "train_seconds": peer["train_seconds"],
                "steps": int(peer["model"].optimizer.iterations.numpy()), "batch_size": FLAGS.batch_size}
    return {"zoo": zoo, "peer": peer_row}


def gan_part(x_train, scorer, real_features):
    import numpy as np

    from benchmarks import keras_io_dcgan_peer
    from zoo import commands
    from zoo.images.entry import latents

    epochs = FLAGS.gan_epochs
    count = FLAGS.gan_train_examples or len(x_train) if epochs else len(x_train)
    workdir = tempfile.mkdtemp(prefix="bench-gan-")
    try:
        if epochs:
            steps = epochs * count // FLAGS.gan_batch_size
            length, extra = {"steps": steps, "batch_size": FLAGS.gan_batch_size}, [f"log_every={max(10, steps // 10)}"]
        else:
            length, extra = {}, [f"max_seconds={_budget()}", "log_every=100"]
        seconds, rows, batch_size = _zoo_train("gan", workdir, FLAGS.gan_preset, FLAGS.gan_config + extra, **length)
        entry, trainer, _ = commands.restore(workdir)
        steps = int(trainer.step.numpy())
        z = latents(FLAGS.frechet_samples, 0, entry.latent_dim).numpy()
        zoo = {"frechet_distance": _fd(scorer, entry.generate(trainer.model, z), real_features),
               "examples_per_sec": _steady_rate(rows, max(10, steps // 10), batch_size),
               "train_seconds": seconds, "steps": steps, "batch_size": batch_size}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not FLAGS.peers:
        return {"zoo": zoo, "images_seen": {"zoo": steps * batch_size}}
    subset = x_train[np.random.RandomState(0).permutation(len(x_train))[:count]]
    peer = keras_io_dcgan_peer.train(subset, epochs=epochs or 10**6, batch_size=FLAGS.gan_peer_batch_size, seed=0,
                                     max_seconds=None if epochs else _budget())
    peer_row = {"frechet_distance": _fd(scorer, peer["sample"](FLAGS.frechet_samples, 0), real_features),
                "examples_per_sec": peer["examples_per_sec"], "train_seconds": peer["train_seconds"],
                "steps": peer["steps"], "batch_size": FLAGS.gan_peer_batch_size}
    return {"zoo": zoo, "peer": peer_row, "images_seen": {"zoo": steps * batch_size,
                                                          "peer": peer_row["steps"] * FLAGS.gan_peer_batch_size}}


def throughput_part(x_train, x_val):
    from benchmarks import keras_io_dcgan_peer, keras_io_vae_peer

    # Two epochs of `count` images: the peers time epoch 2, the zoo its second window.
    counts = {"vae": 100 * FLAGS.batch_size, "gan": FLAGS.gan_throughput_steps * FLAGS.batch_size}
    results = {name: {"zoo": [], "peer": []} for name in counts}
    for _ in range(FLAGS.throughput_repeats):
        for name, count in counts.items():
            if name == "vae":
                peer = keras_io_vae_peer.train(x_train[:count], x_val[:500], epochs=2,
                                               batch_size=FLAGS.batch_size)
            else:
                peer = keras_io_dcgan_peer.train(x_train[:count], epochs=2, batch_size=FLAGS.batch_size)
            results[name]["peer"].append(peer["examples_per_sec"])
            window = count // FLAGS.batch_size
            workdir = tempfile.mkdtemp(prefix=f"bench-{name}-rate-")
            try:
                overrides = PEER_SIZES[name] + [f"log_every={window}", "clipnorm=0", "frechet_train_steps=1"]
                _, rows, _ = _zoo_train(name, workdir, "small", overrides, evaluate=False, steps=2 * window,
                                        batch_size=FLAGS.batch_size)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            results[name]["zoo"].append(_steady_rate(rows, window))
            print(f"[throughput] {name}: zoo {results[name]['zoo'][-1]:.1f}  "
                  f"peer {results[name]['peer'][-1]:.1f}", flush=True)
    for name in counts:
        zoo, peer = statistics.median(results[name]["zoo"]), statistics.median(results[name]["peer"])
        results[name].update(zoo_median=zoo, peer_median=peer, ratio=zoo / peer)
    return results


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # absl would print TensorFlow's INFO lines
    if not os.path.exists(FLAGS.data):
        print(f"skipped: {FLAGS.data} is absent (the shared MNIST file is not beside this checkout).")
        return
    from zoo.images import frechet

    (x_train, y_train), (x_val, _) = _split()
    print(f"MNIST split: {len(x_train)} train / {len(x_val)} held out", flush=True)
    figures = {"split": [len(x_train), len(x_val)]}
    need_fd = {"vae", "gan"} & set(FLAGS.parts)
    if need_fd:
        start = time.perf_counter()
        # The classifier every zoo workdir trains in `prepare` (same data, seed and steps).
        scorer = frechet.FrechetScorer(frechet.train_classifier(x_train, y_train, 10, steps=600))
        real_features = scorer.features(x_val[:FLAGS.frechet_samples])
        figures["frechet_floor"] = _fd(scorer, x_train[:FLAGS.frechet_samples], real_features)
        print(f"Fréchet classifier trained in {time.perf_counter() - start:.0f} s; real train vs held-out: "
              f"{figures['frechet_floor']:.3f}", flush=True)
    if "vae" in FLAGS.parts:
        figures["vae"] = vae_part(x_train, x_val, scorer, real_features)
        print(json.dumps({"vae": {k: {m: v for m, v in r.items() if m != "per_epoch"}
                                  for k, r in figures["vae"].items()}}), flush=True)
    if "gan" in FLAGS.parts:
        figures["gan"] = gan_part(x_train, scorer, real_features)
        print(json.dumps({"gan": figures["gan"]}), flush=True)
    if "throughput" in FLAGS.parts:
        figures["throughput"] = throughput_part(x_train, x_val)
    report(figures)
    if FLAGS.out:
        with open(FLAGS.out, "w") as f:
            json.dump(figures, f, indent=2)


def report(figures):
    print("\n== MNIST generative models, zoo vs keras-io peers ==")
    if "vae" in figures:
        zoo, peer = figures["vae"]["zoo"], figures["vae"].get("peer")
        length = f"{FLAGS.vae_epochs} epochs" if FLAGS.vae_epochs else f"{FLAGS.minutes:g} minutes"
        print(f"VAE, {length} of {figures['split'][0]}; zoo preset {FLAGS.vae_preset} with its defaults "
              f"({' '.join(FLAGS.vae_config) or 'no --config'}), peer latent 2; steps zoo {zoo['steps']} "
              f"(batch {zoo['batch_size']})"
              + (f", peer {peer['steps']} (batch {peer['batch_size']}):" if peer else ":"))
        print(f"{'':6s} {'neg ELBO':>9s} {'recon':>8s} {'KL':>7s} {'Frechet':>8s} {'ex/s':>8s} "
              f"{'train s':>8s}")
        for name, r in (("zoo", zoo), ("peer", peer)):
            if r is None:
                continue
            print(f"{name:6s} {r['neg_elbo']:9.2f} {r['reconstruction']:8.2f} {r['kl']:7.2f} "
                  f"{r['frechet_distance']:8.3f} {r['examples_per_sec']:8.1f} {r['train_seconds']:8.0f}")
        for row in zoo["per_epoch"]:
            print(f"  zoo epoch {row['epoch']:.0f}: neg ELBO {row['neg_elbo']:.2f}, "
                  f"Fréchet {row['frechet_distance']:.3f}")
    if "gan" in figures:
        zoo, peer = figures["gan"]["zoo"], figures["gan"].get("peer")
        length = f"{FLAGS.gan_epochs} epochs" if FLAGS.gan_epochs else f"{FLAGS.minutes:g} minutes"
        print(f"GAN, {length}, training images seen {figures['gan']['images_seen']}; zoo preset {FLAGS.gan_preset} "
              f"with its defaults ({' '.join(FLAGS.gan_config) or 'no --config'}), peer DCGAN recipe:")
        for name, r in (("zoo", zoo), ("peer", peer)):
            if r is None:
                continue
            print(f"{name:6s} Fréchet {r['frechet_distance']:8.3f}  ex/s {r['examples_per_sec']:7.1f}  "
                  f"steps {r['steps']}  train {r['train_seconds']:.0f} s")
    if "frechet_floor" in figures:
        print(f"Fréchet floor ({FLAGS.frechet_samples} real training images vs as many held out): "
              f"{figures['frechet_floor']:.3f}")
    if "throughput" in figures:
        print("Training examples/s on the peers' model sizes (medians of interleaved runs):")
        for name, r in figures["throughput"].items():
            zoo_runs, peer_runs = (", ".join(f"{v:.0f}" for v in r[k]) for k in ("zoo", "peer"))
            print(f"  {name}: zoo {r['zoo_median']:.1f} ({zoo_runs})  "
                  f"peer {r['peer_median']:.1f} ({peer_runs})  ratio {r['ratio']:.2f}")


if __name__ == "__main__":
    app.run(main)
