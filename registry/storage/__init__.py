"""Storage drivers for the registry: a narrow interface and the filesystem driver."""

from registry.storage.base import BlobInfo, Storage, UploadInfo, UploadUnknown, UploadOffsetMismatch
from registry.storage.filesystem import FilesystemStorage

__all__ = ["BlobInfo", "Storage", "UploadInfo", "UploadUnknown", "UploadOffsetMismatch", "FilesystemStorage"]
