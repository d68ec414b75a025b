"""`python -m mnist_clip` is the `mnist-clip` command."""

from mnist_clip.cli import main

main()
