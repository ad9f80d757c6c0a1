"""Entry point for ``python -m autoseg`` (and ``PythonSlicer -m autoseg`` inside Slicer)."""

from autoseg.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
