# A script whose backend is inherited by a forked child that exits normally
# (atexit handlers and interpreter shutdown run in the child), while the parent
# keeps using the backend. No `__main__` guard needed: nothing is spawned.
import os
import sys

from asyncjob import JobBackend

BELL = (
    'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\n'
    "h q[0];\ncx q[0],q[1];\nmeasure q -> c;\n"
)

backend = JobBackend(os.environ["SCRIPT_URL"], os.environ["SCRIPT_TOKEN"], polling_interval=0.01)
backend.run({"parent-before": BELL})
pid = os.fork()
if pid == 0:
    if sys.argv[1:] == ["use"]:
        backend.run({"child": BELL})
    sys.exit(0)  # a normal exit: atexit, then the interpreter's shutdown
_, status = os.waitpid(pid, 0)
backend.run({"parent-after": BELL})
backend.run({"parent-after-2": BELL})
backend.close()
print("child exit status", os.waitstatus_to_exitcode(status))
