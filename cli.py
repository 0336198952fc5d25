"""Repository-root entry point (``python cli.py ...``). The Typer app itself is installed
as ``scgan_rt.cli`` so that no generic top-level ``cli`` module lands in site-packages."""
from scgan_rt.__main__ import main

if __name__ == "__main__":
    main()
