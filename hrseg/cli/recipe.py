"""``hrseg recipe``: list the recipes of a profile and show one resolved, value by value,
with the file and line (or the knob / ``--set``) each value came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml

from hrseg.cli._app import app, user_errors
from hrseg.recipe import DEFAULT_PROFILE, available_profiles, available_recipes, resolve_recipe

recipe_app = typer.Typer(help="Recipes: list them, show one resolved with where each value comes from.", no_args_is_help=True)
app.add_typer(recipe_app, name="recipe")


@recipe_app.command("list")
def list_cli(profile: Annotated[str | None, typer.Option(help="Profile (recipe folder params/<profile>/); default: every profile.")] = None) -> None:
    """Print the recipes of each profile, one per line: PROFILE NAME."""
    with user_errors():
        for name in [profile] if profile else available_profiles():
            for recipe in available_recipes(name):
                typer.echo(f"{name}\t{recipe}")


@recipe_app.command("show")
def show_cli(
    recipe: Annotated[str, typer.Argument(help="Recipe name (params/<profile>/<name>.yaml) or path to a recipe YAML.")],
    profile: Annotated[str, typer.Option(help="Recipe folder params/<profile>/ (the pipeline's default profile is embedded).")] = DEFAULT_PROFILE,
    data_root: Annotated[str | None, typer.Option(help="Datasets under <data-root>/<folder>, as params.yaml's data_root (default: data).")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a recipe value, e.g. --set train.lr=1e-3 (repeatable).")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text (key, value, origin), yaml (the resolved recipe) or json (with origins).")] = "text",
) -> None:
    """Print the recipe a run would use, and for each value the file:line (or knob, --set,
    data root, default) it came from. The same resolution as `hrseg train` and the pipeline."""
    with user_errors():
        resolved = resolve_recipe(recipe, profile=profile, data_root=data_root, overrides=overrides or [], data_root_origin="--data-root")
    if fmt == "yaml":
        typer.echo(yaml.safe_dump(resolved.recipe.to_dict(), sort_keys=False, width=200), nl=False)
    elif fmt == "json":
        typer.echo(json.dumps({"path": str(resolved.path), "recipe": resolved.recipe.to_dict(), "origins": {k: o for k, _, o in resolved.table()}}, indent=2))
    else:
        rows = [(key, json.dumps(value), origin) for key, value, origin in resolved.table()]
        width = [max(len(r[i]) for r in rows) for i in range(2)]
        width[1] = min(width[1], 40)  # long values push their origin right, never get cut
        typer.echo(f"# {resolved.recipe.name}: {Path(resolved.path)}")
        for key, value, origin in rows:
            typer.echo(f"{key.ljust(width[0])}  {value.ljust(width[1])}  {origin}")
