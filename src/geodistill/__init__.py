"""geodistill: distil OpenAI Whisper into a compact student (CE + KL + geodesic hidden-state losses)."""

__version__ = "0.1.0"
