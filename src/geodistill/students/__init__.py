"""Student families behind the ``geodistill.contracts.Student`` contract.

``whisper``: a seq2seq Whisper student (a layer copy of the teacher or another pretrained Whisper,
with LoRA and Riemannian projectors); ``sharing``: what such a copy may take from its teacher
instead of computing it (the frozen encoder's states, cross-attention keys/values); ``ctc``: the
decoder-less CNN + Transformer CTC student (``student.init: ctc``).
"""

from geodistill.students.whisper import WhisperStudent, build_whisper_student

__all__ = ["WhisperStudent", "build_whisper_student"]
