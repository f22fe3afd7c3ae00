"""Jobs: one module per CLI command family. A job loads the model and the data, applies an adapter, runs one
library procedure, writes its files and draws its figures; the science lives in the library modules.

Jobs (and :mod:`nasa_lens.study`, :mod:`nasa_lens.cli`, :mod:`nasa_lens.commands`) may import anything;
no library module imports them. Each job module is torch-free at import time (its configs are read by the
CLI parser); the heavy modules are imported inside the job functions.
"""
