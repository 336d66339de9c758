"""Run CPython's own ``test.test_poplib`` against the drop-in.

Usage: ``python tests/cpython/run_test_poplib.py [--min-pass N]``, under the
interpreter whose test suite is to be used (its ``lib/pythonX.Y/test``
directory must be installed, as pyenv's builds are).  The drop-in
``pop3proto.adapters.sync`` is put in ``sys.modules["poplib"]`` before the
test module is imported, so every ``poplib.`` name in the tests is ours.

Prints one summary line (``test_poplib 3.11.7: 71/71 passed``) and exits
non-zero if fewer than ``--min-pass`` tests passed (all of them by default)
or if the drop-in was not the module under test.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import unittest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--min-pass", type=int, default=None, help="passes required (default: every test)"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    options = parser.parse_args()

    import pop3proto.adapters.sync as drop_in

    sys.modules["poplib"] = drop_in
    test_poplib = importlib.import_module("test.test_poplib")

    if test_poplib.poplib is not drop_in:
        print("test_poplib did not import the drop-in", file=sys.stderr)
        return 2
    suite = unittest.defaultTestLoader.loadTestsFromModule(test_poplib)
    result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2 if options.verbose else 1).run(
        suite
    )
    skipped = len(result.skipped)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    passed = result.testsRun - failed - skipped
    total = suite.countTestCases()
    print(
        f"test_poplib {platform.python_version()}: {passed}/{total} passed"
        f" ({failed} failed, {skipped} skipped)"
    )
    required = total if options.min_pass is None else options.min_pass
    return 0 if passed >= required else 1


if __name__ == "__main__":
    sys.exit(main())
