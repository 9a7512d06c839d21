"""``ftcot run``: teach -> filter -> format -> train -> evaluate -> report (-> push), resumable by stage.

Every run writes one self-describing folder::

    <output_dir>/
      run_config.yaml      the RunConfig (re-run it with `ftcot run --config <output_dir>/run_config.yaml`)
      versions.json        package versions
      rationales/          the teacher's rationale dataset repo (load_dataset(<this>, "<task>")) + yield_report.json
      eval_untrained/<task>/   the student before training: results.json, results.md, completions.jsonl
      student/<task>/      the trained student (weights, tokenizer, generation config, train_summary.json)
      eval/<task>/         the trained student on the test split
      report/              results.md (all stages side by side), accuracy.png, loss.png, summary.json
      stages.json          each stage's fingerprint, wall time and output

A stage is skipped when its folder carries a ``stage.json`` whose fingerprint (a hash of the stage's inputs: its
part of the config and the fingerprints of the stages it reads) matches, so a re-run resumes at the stage that died
and never redoes paid-for work. Stages build in a hidden temporary folder renamed into place at the end, so a
failure (even a full disk) leaves earlier stages' outputs as they were. Training checkpoints every epoch into
``student/.<task>.partial`` and a re-run resumes from the last checkpoint.
"""

from ftcot_hf.pipeline.config import RunConfig, RunResult
from ftcot_hf.pipeline.plan import RunPlan
from ftcot_hf.pipeline.run import cli_main, run, validate
from ftcot_hf.pipeline.stages import STAGE_FILE, building, fingerprint, resolve_bf16, stage_done, test_split

__all__ = [
    "STAGE_FILE",
    "RunConfig",
    "RunPlan",
    "RunResult",
    "building",
    "cli_main",
    "fingerprint",
    "resolve_bf16",
    "run",
    "stage_done",
    "test_split",
    "validate",
]
