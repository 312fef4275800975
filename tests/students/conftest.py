"""The tiny teacher, data and config writer of the training tests, and tiny CTC students on disk."""

from tests.students.ctc_runs import random_ctc_dir, tiny_ctc_run  # noqa: F401
from tests.train.conftest import make_config, tiny_data, tiny_teacher_dir  # noqa: F401
