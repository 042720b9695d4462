"""The metric store: typed ORM tables and the Store that reads and writes them."""

from masbench.store.models import SCHEMA_VERSION, STATUSES, Epoch, Meta, Run
from masbench.store.store import DEFAULT_URL, ClaimLost, Store, mask_url, resolve_url

__all__ = ["DEFAULT_URL", "SCHEMA_VERSION", "STATUSES", "ClaimLost", "Epoch", "Meta", "Run", "Store", "mask_url",
           "resolve_url"]
