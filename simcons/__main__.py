"""`python -m simcons`: the simcons command line."""

from simcons.cli import main

if __name__ == "__main__":
    main(prog_name="simcons")
