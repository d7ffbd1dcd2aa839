"""The imagesearch retriever: vector search, filters and catalog storage on Milvus.

Layers, as in KServe: `servicer` (protobuf in/out) -> `core` (validation,
one hit per product, more-like-this) -> `milvus_store` (the Milvus adapter).
"""
