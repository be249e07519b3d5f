"""The OCI layer tar conventions both sides share: whiteout names, kept xattrs, and LayerError."""

from __future__ import annotations

from dockyard.errors import DockyardError

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
# Other `.wh..wh.` names are aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs), never content.
WHITEOUT_META_PREFIX = ".wh..wh."
XATTR_PAX_PREFIX = "SCHILY.xattr."
CAPABILITY_XATTR = "security.capability"
# overlayfs marks opaque directories with this xattr in the upper dir ("user." when mounted with
# userxattr); only the value "y" means opaque ("x" means "has xattr whiteouts").
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
BLOCK = 512
END_OF_ARCHIVE = bytes(2 * BLOCK)


class LayerError(DockyardError):
    """A layer is corrupt or hostile, or cannot be written or applied; names the entry."""


def kept_xattr(name: str) -> bool:
    """Whether an xattr belongs in a layer: file capabilities and user xattrs, not overlay's own."""
    if name == CAPABILITY_XATTR:
        return True
    return name.startswith("user.") and not overlay_private(name)


def overlay_private(name: str) -> bool:
    """Whether an xattr is overlayfs's own metadata, which a layer must never set (it could forge
    opaque dirs or redirects when unpacked layers serve as overlay lower dirs)."""
    return name.startswith(("trusted.overlay.", "user.overlay."))
