"""Importing panonet.ops fails loudly, naming the cause, when the extension cannot be loaded."""

import subprocess
import sys
import textwrap


def _import_with_broken_extension(error: str) -> subprocess.CompletedProcess:
    # A meta-path finder that makes `import panonet._C` fail the way a missing or broken build
    # does, in a fresh interpreter.
    code = textwrap.dedent(
        f"""
        import importlib.abc, sys
        class Broken(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "panonet._C":
                    raise ImportError({error!r})
        sys.meta_path.insert(0, Broken())
        import panonet.ops
        """
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_import_fails_loudly_with_the_reason():
    result = _import_with_broken_extension("libc10.so: cannot open shared object file")
    assert result.returncode != 0
    assert "panonet's compiled extension panonet._C could not be loaded" in result.stderr
    assert "libc10.so: cannot open shared object file" in result.stderr
    assert "pip install --no-build-isolation -e ." in result.stderr
