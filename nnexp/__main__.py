"""`python -m nnexp [overrides]`: see `python -m nnexp --help`."""

from nnexp.cli import main

if __name__ == "__main__":
    main()
