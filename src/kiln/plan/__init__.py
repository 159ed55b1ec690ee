"""kiln.plan: sizing a run before it starts (`kiln plan`) and fitting a scaling law from your own runs
(`kiln sweep`).

`kiln plan` turns a budget (FLOPs, GPU-hours or money) or a fixed model and token count into compute-optimal
sizes under the published laws (`laws`), memory per device under DDP / ZeRO / FSDP / tensor parallelism
(`memory`), and steps, wall-clock and cost, all from kiln's exact counters on the meta device. `kiln sweep` runs
an IsoFLOP grid of ordinary `kiln train` runs and fits Hoffmann et al.'s approaches 2 and 3 to them (`fit`).
"""
