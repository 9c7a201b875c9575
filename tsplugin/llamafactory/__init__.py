"""LLaMA-Factory integration. `hooks.py` is the one place that touches LLaMA-Factory; the other
modules define what it registers (templates, the `timeseries` mm plugin, dataset wrappers, options).
Nothing here is imported unless LLaMA-Factory is."""
