"""``python -m masbench.cli``: the same as ``masbench``."""

from masbench.cli import main

main()
