"""``python -m masbench``: the command line, also as ``torchrun -m masbench run ...`` for one cell on several GPUs.

``python -m`` puts the working directory first on ``sys.path``; the ``masbench`` script does not. It is taken
off here, so that both import the same code: a module beside a results folder's ``benchmarks.yaml`` is never
imported because of where masbench was started. User code named by import path (``run``, ``sweep`` and ``tune``
import it; no other command imports any) comes from installed packages, entry points, or ``PYTHONPATH``
(``PYTHONPATH=. masbench run --optimizer my_optim:Lion`` for a module in the working directory).
"""

import os
import sys

if sys.path and not sys.flags.safe_path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from masbench.cli import main  # noqa: E402 - after the import path is set

if __name__ == "__main__":
    main()
