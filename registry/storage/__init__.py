"""Registry storage: a narrow driver interface (driver.py), its backends (filesystem.py), and the layout of
blobs, repositories and uploads written once on top of any driver (layout.py)."""

from registry.storage.driver import StorageDriver, open_driver
from registry.storage.layout import BlobInfo, Layout, UploadInfo, UploadOffsetMismatch, UploadUnknown

__all__ = ["BlobInfo", "Layout", "StorageDriver", "UploadInfo", "UploadOffsetMismatch", "UploadUnknown",
           "open_driver", "open_storage"]


def open_storage(driver: str, params: dict) -> Layout:
    """The registry storage on the driver named `driver` (a `storage.<driver>` config section) with `params`."""
    return Layout(open_driver(driver, params))
