"""golfplan: plan, check and run Parameter Golf experiments.

Three packages, one direction of imports:
- ``golfplan.core``: the trainer (config, hookspecs, model, optimizer, data, BPB, export);
  it knows no technique.
- ``golfplan.plugins``: one module per technique; imports only ``golfplan.core``.
- ``golfplan.planner``: preflight checks and Optuna studies; uses core and the
  registry (``golfplan.registry``), never a concrete plugin.
"""

__version__ = "0.1.0"
