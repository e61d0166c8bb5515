"""nnexp: declarative-config neural-network experiments in NumPy."""

__version__ = "0.1.0"
