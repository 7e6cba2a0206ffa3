"""Run the compatlm CLI in `accelerate launch` CPU processes, with two test hooks.

1. **FSDP and DeepSpeed on CPU.** accelerate turns them on only for accelerator devices: on CPU
   processes it always sets up plain data parallelism (MULTI_CPU), so a GPU-less machine cannot
   exercise the sharded code paths through `accelerate launch --use_fsdp` / `--use_deepspeed`.
   Launched with either, this launcher marks the state as FSDP or DEEPSPEED right after the
   Accelerator joined its gloo process group, with the plugin accelerate builds from the launch
   options (`FSDP_*` / `ACCELERATE_DEEPSPEED_*` environment variables), and DeepSpeed on its
   CPU accelerator. From there accelerate's own `prepare` shards the model (torch's
   `fully_shard`, or `deepspeed.initialize`) as it does on GPUs.
2. **Interruption.** `COMPATLM_TEST_INTERRUPT_AT_STEP=N` stops every process after optimiser
   step N, as a Ctrl-C would (resume tests).

Usage, with the options a GPU user would pass:

    accelerate launch --use_fsdp --fsdp_version 2 --num_processes 2 \\
        tests/cpu_launch.py train task CONFIG --out DIR
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve()


def command(options: list[str], argv: list[str], *, port: int, hooks: bool = True) -> list[str]:
    """`accelerate launch OPTIONS` for 2 CPU processes running the CLI with ``argv``: through
    this launcher (``hooks``), or the plain ``python -m compatlm`` users run."""
    program = [str(HERE)] if hooks else ["-m", "compatlm"]
    accelerate = Path(sys.executable).with_name("accelerate")
    fixed = "--num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no"
    return [str(accelerate), "launch", *options, *fixed.split(), "--main_process_port",
            str(port), *program, *argv]  # fmt: skip


def _force(kind: str) -> None:
    """After the Accelerator joined its process group, mark the state as ``kind`` (FSDP or
    DEEPSPEED) with the plugin accelerate builds from the launch options."""
    import accelerate
    from accelerate.state import PartialState
    from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin

    original = accelerate.Accelerator.__init__
    distributed_type = DistributedType[kind]

    def init(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        # Both shared states: AcceleratorState copies PartialState's fields whenever it is
        # instantiated again (accelerate does so inside prepare).
        PartialState._shared_state["distributed_type"] = distributed_type
        self.state.distributed_type = distributed_type
        if kind == "FSDP":
            self.state.fsdp_plugin = FullyShardedDataParallelPlugin()  # from FSDP_* variables
            return
        plugin = DeepSpeedPlugin()  # from ACCELERATE_DEEPSPEED_* variables
        plugin.set_mixed_precision("no")
        plugin.select(_from_accelerator_state=True)
        self.state.deepspeed_plugins = plugin

    accelerate.Accelerator.__init__ = init


def _interrupt_at(step: int) -> None:
    import compatlm.train.loop as loop

    def on_step_end(global_step: int) -> None:
        if global_step == step:
            raise KeyboardInterrupt

    loop._on_step_end = on_step_end


if __name__ == "__main__":
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        _force("FSDP")
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        _force("DEEPSPEED")
    if os.environ.get("COMPATLM_TEST_INTERRUPT_AT_STEP"):
        _interrupt_at(int(os.environ["COMPATLM_TEST_INTERRUPT_AT_STEP"]))
    from compatlm.cli import main

    sys.exit(main(sys.argv[1:]))
