"""How a Whisper model turns audio into text, below every student family: log-Mel features and
``generate`` (``whisper.py``), the batched decoding loop (``batches.py``), long audio and the temperature
fallback (``longform.py``; batched 30-s windows: ``chunked.py``), engines (``engines.py``: CTranslate2;
``onnx.py``: ONNX Runtime), speculative decoding (``assistant.py``), the options they share
(``options.py``), timed transcripts (``segments.py``, ``timed.py``), voice-activity detection (``vad.py``),
word n-gram LMs in ARPA (``ngram.py``: built, read, scored), and what is measured (``speed.py``,
``wer.py``)."""
