"""The metric store: typed ORM tables and the Store that reads and writes them."""

from masbench.store.models import SCHEMA_VERSION, STATUSES, Epoch, Meta, Run
from masbench.store.opening import EmptyStore, NeedsUpgrade
from masbench.store.schema import ForeignStore
from masbench.store.store import DEFAULT_URL, ClaimLost, Store, mask_url, open_for_reading, resolve_url

__all__ = ["DEFAULT_URL", "SCHEMA_VERSION", "STATUSES", "ClaimLost", "EmptyStore", "Epoch", "ForeignStore", "Meta",
           "NeedsUpgrade", "Run", "Store", "mask_url", "open_for_reading", "resolve_url"]
