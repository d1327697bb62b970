"""DVC stage `prepare_<dataset>`: verify a dataset and write its .lst files + summary.json."""

from __future__ import annotations

if __name__ == "__main__":  # start the background services now: the torch stages' warm-start server (before imports change the environment) and the tracking service
    from hrseg.runtime.warm import prestart
    from hrseg.tracking.service import prestart as prestart_tracking

    prestart()
    prestart_tracking()

import argparse

from common import PipelineParams, stage_main

from hrseg.data import prepare_dataset
from hrseg.tracking.tracker import start_tracking


def prepare(dataset: str, root: str, out: str, params: PipelineParams) -> dict:
    summary = prepare_dataset(dataset, root, out)
    tags = {**params.tags("prepare"), "hrseg.dataset": dataset}
    with start_tracking(f"hrseg/{dataset}", f"prepare {dataset}", tags=tags, params={"dataset": dataset, "root": root}) as run:
        run.log_metrics({f"images_{name.removesuffix('.lst')}": int(n) for name, n in summary.get("lists", {}).items()})
        run.log_dict(summary, "summary.json")
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("--root", required=True)
    parser.add_argument("--out", required=True)
    stage_main(parser, lambda args, params: prepare(args.dataset, args.root, args.out, params))
