"""After how many epochs a recipe's point shows: the first epoch whose test accuracy is above
a level (20%, out of chance), per seed, on the bundled digits.

    flock /work/heavy.lock python benchmarks/epochs_to_show.py deep_sigmoid_batchnorm --epochs 20 --seeds 3

Prints each seed's test accuracy per epoch and the first epoch above the level. Runs in
memory; writes nothing. A recipe's `# needs about N epochs to ...` line comes from this.
"""

from __future__ import annotations

import argparse

from mnist_clip.config import Config, load_toml
from mnist_clip.data import load_mnist_5k
from mnist_clip.recipe_files import resolve_config_file
from mnist_clip.training.step import Trainer, train_epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="+")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--level", type=float, default=0.2, help="the test accuracy that counts as out of chance")
    args = parser.parse_args()
    dataset = load_mnist_5k("measured")
    for recipe in args.recipes:
        base = load_toml(resolve_config_file(recipe))
        for seed in range(1234, 1234 + args.seeds):
            config = Config(**{**base, "epochs": args.epochs, "seed": seed, "dataset": "mnist-5k"})
            accuracies = [result.test_accuracy for result in train_epochs(Trainer(config, dataset))]
            above = next((epoch + 1 for epoch, value in enumerate(accuracies) if value > args.level), None)
            shown = " ".join(f"{100 * value:.0f}" for value in accuracies)
            print(f"{recipe} seed {seed}: first epoch above {100 * args.level:.0f}%: {above}; test accuracy % by epoch: "
                  f"{shown}", flush=True)


if __name__ == "__main__":
    main()
