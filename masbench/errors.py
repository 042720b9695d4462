"""The error a user can act on: the CLI prints its message as one line and exits 1."""


class MasbenchError(Exception):
    """Bad input or an environment problem (missing data, unreachable database), said in one line."""


class DiskFull(MasbenchError):
    """No space left where masbench writes (the database, a checkpoint): the message names the path."""
