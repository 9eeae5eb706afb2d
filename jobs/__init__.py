"""What a job is: one module per Novita async model (fields, limits, body, price).

``JOBS`` names the models there are. Today the runner uses ``kling_i2v`` directly; the
models issue turns this into the registry that ``model:`` in a manifest reads.
"""

from jobs import kling_i2v

JOBS = {kling_i2v.NAME: kling_i2v}
DEFAULT_JOB = kling_i2v.NAME
