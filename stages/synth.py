"""DVC stage `synth`: the miniature synthetic datasets the embedded profile runs on."""

from __future__ import annotations

if __name__ == "__main__":  # start the background services now: the torch stages' warm-start server (before imports change the environment) and the tracking service
    from hrseg.runtime.warm import prestart
    from hrseg.tracking.service import prestart as prestart_tracking

    prestart()
    prestart_tracking()

import argparse

from common import PipelineParams, stage_main

from hrseg.data.synth import generate_synthetic
from hrseg.tracking.tracker import start_tracking


def synth(out: str, params: PipelineParams) -> dict:
    report = generate_synthetic(out, seed=params.synth_seed)
    with start_tracking("hrseg/pipeline", "synth", tags=params.tags("synth"), params={"synth_seed": params.synth_seed}) as run:
        run.log_metrics({f"{name}_files": info["files"] for name, info in report.items()})
        run.log_dict(report, "synth.json")
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    stage_main(parser, lambda args, params: synth(args.out, params))
