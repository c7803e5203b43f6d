"""One of the two processes of tests/test_distributed_training.py's two-process run.

The parent starts two of these with the launch environment of docs/distributed.md
(``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``, 4 CPU devices each,
gloo collectives); each runs the CLI's ``train --resume`` exactly as a user would:

    python tests/two_process_worker.py RUN_DIR [KILL_AFTER_STEP] -- key=value ...

With ``KILL_AFTER_STEP`` > 0, this process SIGKILLs itself once the checkpoint of that step
is committed (a preempted host); the parent then kills the other one, as a scheduler would,
and starts both again with the same command.
"""

import os
import signal
import sys

from birdie_jax.cli import main
from birdie_jax.training.checkpoint import Checkpointer

if __name__ == "__main__":
    run_dir, kill_after = sys.argv[1], int(sys.argv[2])
    overrides = sys.argv[sys.argv.index("--") + 1:]
    if kill_after:
        save = Checkpointer.save

        def save_then_die(self, step, *args, **kwargs):
            save(self, step, *args, **kwargs)
            if step == kill_after:
                self.wait()
                print(f"KILLING process {os.environ['JAX_PROCESS_ID']} after step {step}", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

        Checkpointer.save = save_then_die
    code = main(["train", "--config", "hawk_tiny", "--resume", "--quiet", f"train.run_dir={run_dir}", *overrides])
    print(f"WORKER EXIT {code}", flush=True)
    sys.exit(code)
