"""``python -m panonet``: the same command line as the ``panonet`` script."""

from panonet.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
