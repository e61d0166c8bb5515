"""nnexp: declarative-config neural-network experiments in NumPy."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nnexp")  # one source: pyproject.toml's [project] version
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
