"""Launchers for the local stack and the tests: Milvus, Redis, Triton as child processes on free ports."""
