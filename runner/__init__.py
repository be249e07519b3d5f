"""Containers from images: overlay rootfs, namespaces, pivot_root, cgroups, volumes, networks, lifecycle."""
