"""What a job is: one module per Novita async model (fields, limits, body, price).

Adding another model is adding one module here and naming it in ``JOBS``.
"""

from jobs import kling_i2v

JOBS = {kling_i2v.NAME: kling_i2v}
DEFAULT_JOB = kling_i2v.NAME
