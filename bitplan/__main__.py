"""``python -m bitplan`` runs the CLI (and is what ``torchrun -m bitplan`` launches)."""

from bitplan.cli.app import main

if __name__ == "__main__":
    main()
