"""Alignment data composed from known attributes (`tsplugin synth`), as ChatTS builds its own.

- labels.py: THE labels schema (one JSON object per series), its writer, reader and validator;
- attributes.py: draw attributes and compose a series from them;
- qa.py: question kinds, their phrasings, and how answers are read back (eval alignment uses it);
- cli.py: `tsplugin synth`, streamed to NAME.jsonl + NAME.labels.jsonl + a dataset_info.json entry.
Kept import-free here: converters import tsplugin.synth.labels, which must not pull in the rest.
"""
