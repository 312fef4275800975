"""The tiny teacher, data and config writer of the training tests, for the CTC student's run tests."""

from tests.train.conftest import make_config, tiny_data, tiny_teacher_dir  # noqa: F401
