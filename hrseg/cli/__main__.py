"""``python -m hrseg.cli ...`` (what ``torchrun -m hrseg.cli train ...`` runs)."""

from hrseg.cli import app

if __name__ == "__main__":
    app(prog_name="hrseg")
