"""``python -m advdyn`` runs the command-line interface."""

from advdyn.cli import main

if __name__ == "__main__":
    main()
