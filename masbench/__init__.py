"""masbench: benchmark deep-learning optimizers around MAS (Mixing ADAM and SGD).

Landro, Gallo, La Grassa, "Mixing ADAM and SGD: a Combined Optimization Method",
arXiv:2011.08042 (2020).
"""

__version__ = "0.1.0"
