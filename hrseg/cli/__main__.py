"""``python -m hrseg.cli ...`` (what ``torchrun -m hrseg.cli train ...`` runs)."""

from hrseg.cli import run

if __name__ == "__main__":
    run()
