"""The Dockerfile interpreter: parsing, instructions, RUN in the runner's sandbox, layer commit, cache, multi-stage."""
