"""What users type and read: strict numbers, the lambda-schedule grammar, one-line messages, shown values
and the ranges every value must lie in, paths typed (``paths``). Beneath every other package: it imports nothing
from masbench but ``masbench.errors``."""
