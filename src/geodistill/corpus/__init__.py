"""Corpus builders: programs that write a whole speech corpus to disk for the data layer to read.

Each builder gathers or synthesises audio with transcripts and writes it in a layout ``geodistill.data``
loads as is (LibriSpeech folders or a JSONL manifest, 16 kHz mono FLAC), with a README / summary of
sizes, sources and licences: ``demo_corpus`` (``geodistill data demo``), ``real`` (``data real``) and
``synth`` (``data synth``). Builders import the data layer; the data layer never imports them.
"""
