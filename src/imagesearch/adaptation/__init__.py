"""Adapting the embedding to a catalog: `imagesearch adapt` builds a new model version.

Synthetic shopper-style photos are made from the catalog's own product shots
(synthetic.py), embedded with the base model (embedding.py), and a learned
whitening is fitted from how the views differ from their clean shots
(whitening.py). The whitening is appended to the base ONNX graph (graph.py) and
written as a new version of the Triton model, with a same-product calibration
fitted on further views (repository.py, build.py).
"""
