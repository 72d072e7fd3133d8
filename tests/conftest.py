import atexit
import os
import shutil
import sys
import tempfile

import pytest

# Make `configs.*` importable from tests, as the CLI does for config files.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxdiff import hostmem  # noqa: E402

# As `jaxdiff` does (jaxdiff/hostmem.py): keep XLA's freed host temporaries in the heap, so a
# program called repeatedly in a test does not fault them back in on every call. Before any
# test starts JAX's threads; JAXDIFF_HOST_MALLOC=default turns it off here too.
hostmem.keep_host_memory()

# One XLA compilation cache per test worker, removed when it exits: the many command-line runs
# of a test (a killed run and its resumption, two processes, a stage and the next) compile the
# same programs, and a program that took over a second to compile is then read back. Per worker,
# because JAX writes an entry without a lock: another worker could read it half written. The
# subprocesses of a test inherit it. JAX_COMPILATION_CACHE_DIR set beforehand wins (and stays).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="jaxdiff-test-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)


@pytest.fixture(autouse=True)
def _release_host_heap():
    """Each test's programs differ from the next test's: hand the kept heap back after each
    (glibc does not reuse a freed block for a larger request, so different programs stack)."""
    yield
    hostmem.release()
