"""distillbench harness: the pipeline and everything shared between methods and tasks."""

__version__ = "0.1.0"
