"""OCI layers: write a tree as a layer tar, compress it to a blob, apply a layer onto a root."""

from dockyard.layers.apply import apply_layer
from dockyard.layers.blob import LayerBlob, compress_layer, create_layer
from dockyard.layers.diff import write_diff
from dockyard.layers.format import LayerError

__all__ = ["LayerBlob", "LayerError", "apply_layer", "compress_layer", "create_layer", "write_diff"]
