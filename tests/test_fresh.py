"""The snippet runner of the docs, README and command tests (:mod:`fresh`) isolates snippets as
``python -c`` does: nothing of one reaches the next, and exit statuses are the interpreter's."""

from fresh import run_fresh, run_module_fresh


def test_a_snippet_sees_nothing_of_another(tmp_path):
    first = run_fresh("import jax, prcm_torch\njax.config.update('jax_enable_x64', True)\nx = 1\nimport os\n"
                      "print(__name__, os.getcwd())", tmp_path)  # fmt: skip
    assert first.returncode == 0 and first.stdout == f"__main__ {tmp_path}\n", first
    second = run_fresh("import sys, jax\nprint(jax.config.jax_enable_x64, sorted(m for m in sys.modules if m.split('.')[0] in "
                       "('prcm', 'prcm_torch', 'prcm_jax', 'parity', 'bench', 'fresh')))\nprint(x)")  # fmt: skip
    assert second.stdout == "False []\n" and second.returncode == 1, second
    assert second.stderr.startswith("Traceback") and "NameError: name 'x' is not defined" in second.stderr


def test_exit_statuses_are_the_interpreters():
    assert run_fresh("import sys; sys.exit(3)").returncode == 3
    assert run_fresh("raise SystemExit('refused')") == run_fresh("import sys; sys.exit('refused')")
    assert run_fresh("raise SystemExit('refused')").returncode == 1 and run_fresh("raise SystemExit").returncode == 0
    assert run_fresh("import time; time.sleep(30)", timeout=1).returncode == -9
    assert run_fresh("import atexit, threading, time; atexit.register(print, 'atexit')\n"
                     "threading.Thread(target=lambda: (time.sleep(0.5), print('thread'))).start()").stdout == "thread\natexit\n"  # fmt: skip
    done = run_module_fresh("parity", "--dtypes", "float8")
    assert done.returncode == 2 and done.stderr.startswith("usage: ") and done.stdout == ""
