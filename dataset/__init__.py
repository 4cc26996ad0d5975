"""Studies as datasets: exports (and, later, benchmark formats and vote importers).

Named ``dataset`` rather than ``datasets``: a top-level ``datasets`` package in the
repository would shadow Hugging Face's ``datasets``, which pyiqa imports (its
compare2score metric does ``from datasets import load_dataset``) in every process started
from the repository root.
"""
