"""The `dockyard` command line: argument parsing only; the work is done by the packages."""
