"""Your own Keras model, watched by mnist-clip: a small CNN and an LSTM on the bundled digits.

    python examples/own_model.py [--out outputs/own-model] [--epochs 3]

Each model trains with `fit`, its optimizer wrapped by a GradientProbe: per step and per tensor,
the gradient norms before and after clipping, the step applied, the weights' norms. The CNN clips
with its optimizer's own global_clipnorm; the LSTM is clipped by the probe (clip="norm"). Then
both runs are drawn (<out>/<name>/plots/) and compared (<out>/compare/compare.png).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras

import mnist_clip as mc
from mnist_clip.data import load_mnist_5k


def cnn() -> keras.Model:
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 3, activation="relu", name="conv2"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu", name="dense"),
        keras.layers.Dense(10, name="logits"),
    ], name="cnn")


def lstm() -> keras.Model:
    """An image as 28 time steps of 28 pixels (its rows)."""
    return keras.Sequential([keras.Input((28, 28)), keras.layers.LSTM(32, name="lstm"),
                             keras.layers.Dense(10, name="logits")], name="lstm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/own-model")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    data = load_mnist_5k("the example")
    x_train, x_test = data.x_train.astype("float32") / 255.0, data.x_test.astype("float32") / 255.0
    y_train, y_test = data.y_train, data.y_test
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    runs = []
    for name, model, optimizer, clipping, shape in (
        ("cnn", cnn, keras.optimizers.Adam(1e-3, global_clipnorm=1.0), {}, (-1, 28, 28, 1)),
        ("lstm", lstm, keras.optimizers.Adam(1e-2), {"clip": "norm", "clip_norm": 0.5}, (-1, 28, 28)),
    ):
        keras.utils.set_random_seed(1234)
        model = model()
        probe = mc.GradientProbe(out=args.out, name=name, overwrite=True, dataset="mnist-5k", **clipping)
        model.compile(optimizer=probe.wrap(optimizer), loss=loss, metrics=["accuracy"])
        model.fit(x_train.reshape(shape), y_train, batch_size=64, epochs=args.epochs,
                  validation_data=(x_test.reshape(shape), y_test), callbacks=[probe], verbose=2)
        runs.append(probe.run)
    table, _ = mc.compare(runs, out=Path(args.out) / "compare")
    print(table[["name", "clip", "status", "steps", "steps_clipped", "test_accuracy",
                 "median_w1_wL_first_epoch", "median_w1_wL_last_epoch"]].to_string(index=False))
    print(f"pictures: {Path(args.out) / 'cnn' / 'plots'}, {Path(args.out) / 'lstm' / 'plots'}, "
          f"{Path(args.out) / 'compare' / 'compare.png'}")


if __name__ == "__main__":
    main()
