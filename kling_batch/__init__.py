"""kling-batch as a library, for scripts and notebooks::

    import kling_batch as kb

    plan = kb.validate("manifests/example.yaml")       # nothing sent: plan.ok, plan.problems
    result = kb.run(rows_dataframe, "outputs/tonight", simulate=True)
    result.report                                      # the report, as a DataFrame
    kb.read_report("outputs/tonight")                  # any run folder's report
    kb.redo_rejected("outputs/tonight")                # what a person rejected, again

:func:`run` works from a script and inside a running event loop (a Jupyter cell);
:func:`run_async` awaits the same. See ``runner.run.library`` for every argument.
"""

from runner.run.library import (
    ManifestLike,
    RedoChanged,
    RunResult,
    load_manifest,
    read_report,
    redo_rejected,
    run,
    run_async,
    validate,
)

__all__ = [
    "ManifestLike",
    "RedoChanged",
    "RunResult",
    "load_manifest",
    "read_report",
    "redo_rejected",
    "run",
    "run_async",
    "validate",
]
