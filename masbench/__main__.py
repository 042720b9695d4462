"""``python -m masbench``: the command line, also as ``torchrun -m masbench run ...`` for one cell on several GPUs."""

from masbench.cli import main

if __name__ == "__main__":
    main()
