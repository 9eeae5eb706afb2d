"""kling-batch as a library, for scripts and notebooks::

    import kling_batch as kb

    plan = kb.validate("manifests/example.yaml")       # nothing sent: plan.ok, plan.problems
    result = kb.run(rows_dataframe, "outputs/tonight", simulate=True)
    result.report                                      # the report, as a DataFrame
    kb.read_report("outputs/tonight")                  # any run folder's report

:func:`run` works from a script and inside a running event loop (a Jupyter cell);
:func:`run_async` awaits the same. See ``runner.run.library`` for every argument.
"""

from runner.run.library import (
    ManifestLike,
    RunResult,
    load_manifest,
    read_report,
    run,
    run_async,
    validate,
)

__all__ = [
    "ManifestLike",
    "RunResult",
    "load_manifest",
    "read_report",
    "run",
    "run_async",
    "validate",
]
