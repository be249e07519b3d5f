"""One Flask blueprint per API resource."""

from registry.endpoints import base, blobs, catalog, manifests, referrers, tags, uploads

BLUEPRINTS = [base.bp, blobs.bp, uploads.bp, manifests.bp, tags.bp, catalog.bp, referrers.bp]
