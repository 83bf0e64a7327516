"""``python -m triosock``: see ``python -m triosock --help``."""

from ._cli import main

if __name__ == "__main__":
    main(prog="python -m triosock")
