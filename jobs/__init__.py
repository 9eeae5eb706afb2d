"""What a job is: one declaration per Novita model (``jobs/kling_*.py``, one module per
family) on the written contract of ``jobs/contract.py``. ``MODELS`` is the registry:
adding a model is declaring it in its family's module and listing it here.
"""

from jobs import kling_o1, kling_v21, kling_v26, kling_v30
from jobs.contract import Model

DEFAULT_MODEL = kling_v26.NAME  # what a manifest that names no model gets
MODELS: dict[str, Model] = {
    model.name: model
    for model in (kling_v26.MODEL, *kling_v21.MODELS, *kling_o1.MODELS, *kling_v30.MODELS)
}
JOBS = MODELS  # the older name


def model_named(name: str | None) -> Model:
    """The model of that name (the default when None); KeyError for an unknown one."""
    return MODELS[name or DEFAULT_MODEL]
