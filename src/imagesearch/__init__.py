"""imagesearch: visual product search."""
