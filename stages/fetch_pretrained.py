"""DVC stage `fetch_pretrained`: the ImageNet weights the recipes of the active profile start
from. The embedded profile trains from scratch and downloads nothing."""

from __future__ import annotations

if __name__ == "__main__":  # start the background services now: the torch stages' warm-start server (before imports change the environment) and the tracking service
    from hrseg.runtime.warm import prestart
    from hrseg.tracking.service import prestart as prestart_tracking

    prestart()
    prestart_tracking()

import argparse
from pathlib import Path

from common import PipelineParams, pipeline_rows, stage_main

from hrseg import io as hio
from hrseg.tracking.tracker import start_tracking
from hrseg.weights.catalogue import CATALOGUE
from hrseg.weights.download import FetchError, fetch


def needed_files(params: PipelineParams) -> list[str]:
    """File names of ``train.pretrained`` over every row, as resolved for this profile."""
    files = {params.resolve(row).recipe.train.pretrained for row in pipeline_rows()}
    return sorted(p.name for p in files if p is not None)


def fetch_pretrained(dest: Path, params: PipelineParams) -> dict:
    by_file = {entry.filename: entry for entry in CATALOGUE.values()}
    mirrors = [params.pretrained_mirror] if params.pretrained_mirror else []
    manifest = {"profile": params.profile, "weights": {}}
    for filename in needed_files(params):
        if filename not in by_file:
            raise FetchError(f"{filename}: no catalogue entry; put the file in {dest}/ or add it to hrseg/weights/catalogue.py")
        path = fetch(by_file[filename], dest, mirrors=mirrors)
        manifest["weights"][filename] = {"entry": by_file[filename].name, "sha256": hio.sha256_file(path)}
    hio.write_json(dest / "manifest.json", manifest)
    with start_tracking("hrseg/pipeline", "fetch_pretrained", tags=params.tags("fetch"), params={"profile": params.profile}) as run:
        run.log_dict(manifest, "manifest.json")
    return manifest


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dest", type=Path, required=True)
    stage_main(parser, lambda args, params: fetch_pretrained(args.dest, params))
