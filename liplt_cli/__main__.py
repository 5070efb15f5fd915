"""``python -m liplt_cli`` runs the command-line interface."""

from liplt_cli.cli.app import main

if __name__ == "__main__":
    main()
