"""The `imagesearch` command line: run a local stack, index a catalog, search it."""
