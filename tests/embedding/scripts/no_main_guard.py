# A user's script without an `if __name__ == "__main__":` guard: it submits a
# batch of 70 OpenQASM 3 circuits that define a gate (the full parser's path).
# Finding 1 of issue 13: a process pool started to validate them re-ran this
# file in every spawned worker, each submitting the batch again.
import os

from asyncjob import JobBackend

HEADER = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'
circuits = {
    f"c{i}": f"{HEADER}gate g{i} a, b {{ h a; cx a, b; }}\nqubit[2] q;\nbit[2] c;\n"
    f"g{i} q[0], q[1];\nc = measure q;\n"
    for i in range(70)
}
with JobBackend(os.environ["SCRIPT_URL"], os.environ["SCRIPT_TOKEN"]) as backend:
    handle = backend.submit_circuits(circuits)
print(handle.job_id)
