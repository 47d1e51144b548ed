"""``python -m fusebench``: the command line, also as torchrun's module (``torchrun ... -m fusebench train``)."""

from fusebench.cli import main

if __name__ == "__main__":
    main()
