"""`python -m tests.pdeathsig PARENT_PID CMD [ARGS...]`: exec CMD so the kernel SIGKILLs it when the test process dies.

Why a wrapper instead of `Popen(preexec_fn=prctl)`: a preexec_fn makes Python fork (instead of vfork) and run
fork hooks in a child of a process that uses gRPC; gRPC's fork handling then sometimes aborted that child
(SIGABRT, "epoll_wait error: Bad file descriptor") before it could exec, and importing in the forked child
could deadlock. Here the prctl runs in a fresh interpreter and PR_SET_PDEATHSIG survives the exec.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    parent, command = int(argv[0]), argv[1:]
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != parent:  # the test process died before the prctl took effect
        sys.exit(1)
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
