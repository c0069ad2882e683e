"""The runner of the package's test scripts: unittest, verbose on stderr,
then on stdout each skip as "skipped: NAME (REASON)" and last the line
"N passed, N failed, N skipped" that tests/run.sh (make test) and
run_gpu.sh add up.  Exit status 1 on a failure.  Arguments, if any, name
the tests to run (a class, or Class.test_name)."""
import sys
import unittest


def main(module=None):
    mod = module or sys.modules["__main__"]
    names = [a for a in sys.argv[1:] if not a.startswith("-")]
    loader = unittest.TestLoader()
    suite = loader.loadTestsFromNames(names, mod) if names else loader.loadTestsFromModule(mod)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stderr).run(suite)
    bad = {t.id() for t, _ in result.failures + result.errors}
    skipped = len(result.skipped)
    for test, reason in result.skipped:
        print(f"skipped: {test.id().split('.', 1)[1]} ({reason})")
    passed = result.testsRun - skipped - len(bad)
    print(f"{passed} passed, {len(bad) + len(result.unexpectedSuccesses)} failed, {skipped} skipped", flush=True)
    return 0 if result.wasSuccessful() else 1
