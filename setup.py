"""setuptools glue: compiles csrc/ into minirun._native with cffi at install time."""

from setuptools import setup

setup(cffi_modules=["csrc/build_ffi.py:ffibuilder"])
