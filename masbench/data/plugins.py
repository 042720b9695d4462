"""Plugins' data sets: an entry point of group ``masbench.datasets`` names a function ``load(data_dir)``.

The function carries its kind, which masbench needs before loading (to pair models and data)::

    def blobs(data_dir):
        return TabularDataset.from_arrays("blobs", x_train, y_train, x_test, y_test, ["a", "b"])
    blobs.kind = "tabular"

It returns an ``ImageDataset`` (kind ``image``) or a ``TabularDataset`` (kind ``tabular``); text sets
need the model's tokenizer and are not taken from plugins. The set is identified by its name alone.
"""

from __future__ import annotations

import functools

from masbench.data.entry import DatasetEntry
from masbench.errors import MasbenchError
from masbench.text.shown import shown

PLUGIN_KINDS = ("image", "tabular")


@functools.cache
def plugin_entry(name: str):
    """The ``DatasetEntry`` of a plugin's data set ``name``, or None; MasbenchError for a broken plugin."""
    from masbench.plugins import find, load

    try:
        plugin = find("datasets", name)
        if plugin is None:
            return None
        function = load(plugin)
    except ValueError as error:
        raise MasbenchError(str(error)) from None
    label = f"plugin {plugin.source}: its data set {shown(name)} ({plugin.value})"
    kind = getattr(function, "kind", None)
    if not callable(function) or kind not in PLUGIN_KINDS:
        raise MasbenchError(f"{label} must be a function load(data_dir) with an attribute kind, one of "
                            f"{', '.join(PLUGIN_KINDS)} (got kind {shown(kind)})")
    return DatasetEntry(kind, plugin.value, functools.partial(_load, function, label, kind), source=plugin.source)


def _load(function, label: str, kind: str, argument, data_dir, options):
    from masbench.data.base import ImageDataset
    from masbench.data.tabular import TabularDataset

    try:
        dataset = function(data_dir)
    # The plugin's code: whatever it raises is its fault, said in one line (MASBENCH_DEBUG=1 shows it whole).
    except Exception as error:  # noqa: BLE001
        raise MasbenchError(f"{label}: loading failed ({type(error).__name__}: {error})") from error
    expected = {"image": ImageDataset, "tabular": TabularDataset}[kind]
    if not isinstance(dataset, expected):
        raise MasbenchError(f"{label} returned {shown(dataset)}, not the {expected.__name__} its kind "
                            f"{kind!r} says")
    return dataset
