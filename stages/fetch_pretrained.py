"""DVC stage `fetch_pretrained`: the ImageNet weights the recipes of the active profile start
from. The embedded profile trains from scratch and downloads nothing."""

from __future__ import annotations

import argparse
from pathlib import Path

from common import resolve_recipe, stage_main, stage_tags

from hrseg import io
from hrseg.catalogue import CATALOGUE
from hrseg.fetch import fetch, sha256_file
from hrseg.recipe import available_recipes
from hrseg.tracking import start_tracking


def needed_files(params: dict) -> list[str]:
    """File names of ``train.pretrained`` over every recipe, as resolved for this profile."""
    files = {resolve_recipe(name, params).train.pretrained for name in available_recipes()}
    return sorted(p.name for p in files if p is not None)


def fetch_pretrained(dest: Path, params: dict) -> dict:
    by_file = {entry.filename: entry for entry in CATALOGUE.values()}
    mirrors = [params["pretrained_mirror"]] if params.get("pretrained_mirror") else []
    manifest = {"profile": params["profile"], "weights": {}}
    for filename in needed_files(params):
        if filename not in by_file:
            raise SystemExit(f"{filename}: no catalogue entry; put the file in {dest}/ or add it to hrseg/catalogue.py")
        path = fetch(by_file[filename], dest, mirrors=mirrors)
        manifest["weights"][filename] = {"entry": by_file[filename].name, "sha256": sha256_file(path)}
    io.write_json(dest / "manifest.json", manifest)
    with start_tracking("hrseg/pipeline", "fetch_pretrained", tags=stage_tags(params, "fetch"), params={"profile": params["profile"]}) as run:
        run.log_dict(manifest, "manifest.json")
    return manifest


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dest", type=Path, required=True)
    stage_main(parser, lambda args, params: fetch_pretrained(args.dest, params))
