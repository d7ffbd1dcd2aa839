"""The imagesearch embedder service: encoded images in, embedding vectors out (via Triton)."""
