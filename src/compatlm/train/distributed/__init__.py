"""Running the training loop on several processes: the Accelerator and sharded parameters
(:mod:`~compatlm.train.distributed.sharding`: DDP, FSDP2) and DeepSpeed ZeRO's engine
(:mod:`~compatlm.train.distributed.zero`). Single-process training goes through the same calls,
which then do nothing."""
