"""The planner: preflight checks and Optuna studies over the registry's techniques.

Uses ``golfplan.core`` and ``golfplan.registry``; never imports a concrete plugin.
"""
