"""Teacher outputs behind one interface: computed online by a frozen model, or read from a cache."""

from geodistill.teacher.cache import CachedTeacher, build_cache
from geodistill.teacher.outputs import OnlineTeacher, TeacherOutputs, forward_states

__all__ = [
    "CachedTeacher",
    "OnlineTeacher",
    "TeacherOutputs",
    "build_cache",
    "forward_states",
]
