"""Conformance tests organised by the OCI runtime spec's documents (see conftest.py)."""
