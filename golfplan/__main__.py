"""``python -m golfplan`` (what ``torchrun -m golfplan run ...`` starts on each rank)."""

from golfplan.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
