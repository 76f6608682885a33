"""Builds the native executor (`runtime/_native.cpp`); everything else is declared in pyproject.toml."""

from pybind11.setup_helpers import Pybind11Extension
from setuptools import setup

# -march=native: the extension is built on the machine that runs it (`make` installs in place), so it may use
# every vector instruction this CPU has (AVX2, AVX-512, F16C for fp16 rows).
native = Pybind11Extension(
    "embmap.runtime._native",
    ["runtime/_native.cpp"],
    cxx_std=20,
    extra_compile_args=["-O3", "-march=native", "-fno-math-errno"],
)

setup(ext_modules=[native])
