"""Command line: python -m bench VERB (docs/usage.md). This file dispatches: each verb is one
file under bench/commands/ (its flags, then its run); bad input ends with one line on stderr and
exit code 2; Ctrl-C keeps every finished run.
"""

from __future__ import annotations

import os
import signal
import sys

from bench import BenchError, commands


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = commands.parser(argv).parse_args(argv)
    try:
        from bench import store  # after parsing: a parse error answers before torch is imported

        with store.using(store.Store.from_env()):  # the one place the command line reads it
            return commands.module(args.verb).main(args, argv) or 0
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `bench runs | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except OSError as e:  # a full disk, a read-only store: name the file, keep what is finished
        where = f" {e.filename}" if e.filename else ""
        print(f"error: cannot write{where}: {e.strerror or e}; finished runs are kept", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\ninterrupted: finished runs are stored; run the same command again to continue "
            "(a run stopped mid-training resumes after its last saved epoch)",
            file=sys.stderr,
        )
        return 130


def _terminated(signum, frame):
    raise KeyboardInterrupt  # `kill PID`: the tidy exit of Ctrl-C (claims released, finished runs kept)


def entry() -> None:
    """The `latentbench` command, and `python -m bench`."""
    signal.signal(signal.SIGTERM, _terminated)
    sys.exit(main())


if __name__ == "__main__":
    entry()
