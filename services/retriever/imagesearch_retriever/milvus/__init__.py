"""The Milvus adapter of the retriever: collections (schema.py), filter expressions (expressions.py),
error translation (errors.py) and the store itself (store.py)."""

import warnings

# pymilvus 2.4 imports pkg_resources, whose deprecation warning would open every log and --help;
# silenced here, before the modules of this package import pymilvus.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
