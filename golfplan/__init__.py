"""golfplan: plan, check and run Parameter Golf experiments.

Layers, every import pointing down (tests/test_layers.py checks it):
- ``golfplan.core``: the trainer (config, hookspecs, model, optimizer, data, BPB, export, the
  training step); it knows no technique.
- ``golfplan.plugins``: one module per technique; imports only ``golfplan.core``.
- ``golfplan.registry``: discovery of techniques (built-ins, entry points, ``--plugin-path``).
- ``golfplan.check``: the preflight (``golfplan check``), used by runs, the planner and tests.
- ``golfplan.planner``: Optuna studies; uses core, the registry and the check, never a concrete plugin.
- ``golfplan.cli``: the ``golfplan`` command, on top.

This file holds only the version, so every layer may read it.
"""

__version__ = "0.1.0"
